import CBatonShim
import Dispatch
import Glibc

/// Copies a worker's output to Baton's own, each line prefixed with the worker's
/// generation and slot (`[g3/s1] `). Used when `output = "prefix"`.
final class OutputRelay: @unchecked Sendable {
    // Confined to `queue`.
    private var pending: [UInt8] = []
    private let prefix: [UInt8]
    private let target: Int32
    private let source: DispatchSourceRead
    private static let queue = DispatchQueue(label: "baton.output")

    /// Returns the relay and the write end of its pipe, to give to the worker.
    static func make(prefix: String, target: Int32) throws(SystemError) -> (OutputRelay, writeEnd: Int32) {
        var ends: [Int32] = [0, 0]
        let error = baton_pipe(&ends)
        guard error == 0 else { throw SystemError("pipe2", errno: error, subject: "output of \(prefix)") }
        return (OutputRelay(readEnd: ends[0], prefix: prefix, target: target), ends[1])
    }

    private init(readEnd: Int32, prefix: String, target: Int32) {
        self.prefix = Array("[\(prefix)] ".utf8)
        self.target = target
        source = DispatchSource.makeReadSource(fileDescriptor: readEnd, queue: Self.queue)
        source.setEventHandler { [unowned self] in self.drain(readEnd) }
        source.setCancelHandler { [self] in
            self.flush()
            close(readEnd)
        }
        source.resume()
    }

    private func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else {
            if count == 0 || errno != EAGAIN && errno != EINTR { source.cancel() }
            return
        }
        pending.append(contentsOf: buffer[0..<count])
        var output: [UInt8] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            output += prefix
            output += pending[...newline]
            pending.removeSubrange(...newline)
        }
        write(output)
    }

    private func flush() {
        guard !pending.isEmpty else { return }
        write(prefix + pending + [UInt8(ascii: "\n")])
        pending = []
    }

    private func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(target, $0.baseAddress, $0.count) }
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
