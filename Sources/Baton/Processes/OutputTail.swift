import CBatonShim
import Glibc
import NIOConcurrencyHelpers

/// The end of what a short-lived process (a canary's health check) writes: its output
/// goes to a pipe whose last bytes are kept, bounded, so that its failure can quote its
/// last lines. The pipe is always read, so a process that writes much never blocks on it.
final class OutputTail: @unchecked Sendable {
    /// How many bytes of the end of the output are kept.
    static let keptBytes = 4096

    /// Guards what follows: the watcher's handler reads the pipe, and so does
    /// ``lastLines(_:)`` once the process has exited.
    private let lock = NIOLock()
    private var kept: [UInt8] = []
    private var readEnd: Int32 = -1
    /// The pipe reached its end: the watcher closes it.
    private var ended = false

    /// Starts keeping the end of what is written to a new pipe; returns its write end,
    /// to give to the process (and to close once it has it).
    static func start(subject: String) throws(SystemError) -> (fd: Int32, tail: OutputTail) {
        var ends: [Int32] = [0, 0]
        let error = baton_pipe(&ends)
        guard error == 0 else { throw SystemError("pipe2", errno: error, subject: subject) }
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        let tail = OutputTail()
        tail.readEnd = ends[0]
        do throws(SystemError) {
            try DescriptorWatcher.shared.watch(ends[0], subject: subject) { fd in
                tail.lock.withLock { tail.read(fd) }
            }
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
        return (ends[1], tail)
    }

    /// The last `count` non-blank lines written, escaped as the log has them, after
    /// reading what the pipe still holds.
    func lastLines(_ count: Int = 5) -> [String] {
        lock.withLock {
            while !ended, readEnd >= 0, read(readEnd, untilEmpty: true) {}
            return kept.split(separator: UInt8(ascii: "\n")).suffix(count * 4)
                .map { WorkerOutputLine.escaped($0).trimmingSpaces }
                .filter { !$0.isEmpty }
                .suffix(count)
                .map { $0.count > OutputRelay.keptLineLength ? String($0.prefix(OutputRelay.keptLineLength)) + "…" : $0 }
        }
    }

    /// Reads what the pipe holds (once, or until it is empty); false at its end. Called
    /// with `lock` held.
    private func read(_ fd: Int32, untilEmpty: Bool = false) -> Bool {
        guard !ended else { return false }
        var buffer = [UInt8](repeating: 0, count: 16384)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else {
            if count < 0 && errno == EINTR { return true }
            if count < 0 && errno == EAGAIN { return !untilEmpty }
            ended = true
            return false
        }
        kept += buffer[0..<count]
        if kept.count > Self.keptBytes { kept.removeFirst(kept.count - Self.keptBytes) }
        return true
    }
}

extension String {
    /// Without the spaces and tabs at either end.
    var trimmingSpaces: String {
        String(Substring(self).drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
