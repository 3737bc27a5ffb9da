import CBatonShim
import Glibc
import NIOConcurrencyHelpers
import Synchronization

/// Copies a worker's output to Baton's own, each line prefixed with the worker's
/// generation and slot (`[g3/s1] `). Used when `output = "prefix"`.
///
/// The relay never waits for Baton's output to be read: lines go to an ``OutputWriter``,
/// which writes them from its own thread and drops what does not fit its buffer.
final class OutputRelay: @unchecked Sendable {
    /// The longest line passed on whole; a longer one is cut into lines this long, so
    /// that a worker writing without newlines cannot grow Baton's memory.
    static let longestLine = 64 * 1024

    // Touched only by the watcher's handler, which never runs twice at once.
    private var pending: [UInt8] = []
    private let prefix: [UInt8]
    private let writer: OutputWriter

    /// Starts a relay; returns the write end of its pipe, to give to the worker.
    static func start(prefix: String, target: Int32) throws(SystemError) -> Int32 {
        var ends: [Int32] = [0, 0]
        let error = baton_pipe(&ends)
        guard error == 0 else { throw SystemError("pipe2", errno: error, subject: "output of \(prefix)") }
        let relay = OutputRelay(prefix: prefix, writer: target == STDERR_FILENO ? .standardError : .standardOutput)
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

    private init(prefix: String, writer: OutputWriter) {
        self.prefix = Array("[\(prefix)] ".utf8)
        self.writer = writer
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
        while pending.count >= Self.longestLine {
            output += prefix
            output += pending[..<Self.longestLine]
            output.append(UInt8(ascii: "\n"))
            pending.removeSubrange(..<Self.longestLine)
        }
        writer.write(output)
        return true
    }

    private func flush() {
        guard !pending.isEmpty else { return }
        writer.write(prefix + pending + [UInt8(ascii: "\n")])
        pending = []
    }
}

/// Writes relayed output to one of Baton's own descriptors from a thread of its own, so
/// that a reader who does not keep up (a full pipe, a stopped terminal) stalls only that
/// thread. What does not fit in ``capacity`` bytes waiting to be written is dropped,
/// whole lines at a time, and counted in ``droppedBytes``.
final class OutputWriter: @unchecked Sendable {
    static let capacity = 1024 * 1024

    static let standardOutput = OutputWriter(target: STDOUT_FILENO)
    static let standardError = OutputWriter(target: STDERR_FILENO)

    /// Bytes of worker output dropped since Baton started, on every descriptor.
    static var droppedBytes: Int { dropped.load(ordering: .relaxed) }
    private static let dropped = Atomic<Int>(0)

    private let target: Int32
    /// 1 while `queued` holds something to write.
    private let condition = ConditionLock(value: 0)
    // Guarded by `condition`.
    private var queued: [UInt8] = []

    private init(target: Int32) {
        self.target = target
        Thread.detach { [self] in run() }
    }

    /// Queues `bytes` (whole lines) to be written; drops them when the queue is full.
    func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        condition.lock()
        guard queued.count + bytes.count <= Self.capacity else {
            let hasWork = queued.isEmpty ? 0 : 1
            condition.unlock(withValue: hasWork)
            Self.dropped.add(bytes.count, ordering: .relaxed)
            return
        }
        queued += bytes
        condition.unlock(withValue: 1)
    }

    private func run() {
        while true {
            condition.lock(whenValue: 1)
            let bytes = queued
            queued = []
            condition.unlock(withValue: 0)
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Glibc.write(target, $0.baseAddress, $0.count) }
                if written <= 0 {
                    if written < 0 && errno == EINTR { continue }
                    // Nobody can read it (closed, or an error): what is left is lost too.
                    Self.dropped.add(bytes.count - offset, ordering: .relaxed)
                    break
                }
                offset += written
            }
        }
    }
}
