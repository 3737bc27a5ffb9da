import CBatonShim
import Glibc

/// Copies a worker's output to Baton's own, each line prefixed with the worker's
/// generation and slot (`[g3/s1] `). Used when `output = "prefix"`.
final class OutputRelay: @unchecked Sendable {
    // Touched only by the watcher's handler, which never runs twice at once.
    private var pending: [UInt8] = []
    private let prefix: [UInt8]
    private let target: Int32

    /// Starts a relay; returns the write end of its pipe, to give to the worker.
    static func start(prefix: String, target: Int32) throws(SystemError) -> Int32 {
        var ends: [Int32] = [0, 0]
        let error = baton_pipe(&ends)
        guard error == 0 else { throw SystemError("pipe2", errno: error, subject: "output of \(prefix)") }
        let relay = OutputRelay(prefix: prefix, target: target)
        do throws(SystemError) {
            // The relay lives as long as the watcher holds its handler: until the worker
            // and every process that inherited its output have closed the pipe.
            try DescriptorWatcher.shared.watch(ends[0], subject: "output of \(prefix)") { relay.drain($0) }
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
        return ends[1]
    }

    private init(prefix: String, target: Int32) {
        self.prefix = Array("[\(prefix)] ".utf8)
        self.target = target
    }

    /// Copies what the pipe holds; false at its end.
    private func drain(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else {
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
            flush()
            return false
        }
        pending.append(contentsOf: buffer[0..<count])
        var output: [UInt8] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            output += prefix
            output += pending[...newline]
            pending.removeSubrange(...newline)
        }
        write(output)
        return true
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
