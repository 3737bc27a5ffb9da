import CBatonShim
import Glibc
import NIOConcurrencyHelpers
import Synchronization

/// Copies a worker's output to Baton's own, a line at a time, so that nothing a worker
/// writes can pass for one of Baton's log lines. Used when `output = "prefix"`.
///
/// With text logs each line gets the worker's generation and slot (`[g3/s1] `); with
/// JSON logs each line becomes a JSON object of its own (``WorkerOutputLine``). Control
/// characters, ANSI escapes, `\r` and bytes that are not UTF-8 are escaped (`\x1b`), so
/// a worker can neither move the cursor over Baton's lines nor start a line of its own.
///
/// The relay never waits for Baton's output to be read: lines go to an ``OutputWriter``,
/// which writes them from its own thread and drops what does not fit its buffer.
final class OutputRelay: @unchecked Sendable {
    /// The longest line passed on whole; a longer one is cut into parts this long, each
    /// after the first marked as continued, so that a worker writing without newlines
    /// cannot grow Baton's memory.
    static let longestLine = 64 * 1024

    /// How many of the worker's last lines on standard error are kept, for the reason of
    /// its exit (``lastLines()``), and how much of each.
    static let keptLines = 5
    static let keptLineLength = 240

    /// Guards what follows: the watcher's handler reads the pipe, and so does
    /// ``lastLines()`` on the supervisor's loop when the worker has exited.
    private let lock = NIOLock()
    private var pending: [UInt8] = []
    /// The line under way was cut: its next part is marked as continued.
    private var continuing = false
    /// The pipe's read end, which the watcher owns and closes once `ended`.
    private var readEnd: Int32 = -1
    /// The pipe reached its end (or failed): the watcher closes it.
    private var ended = false
    /// The last lines read, escaped and cut to ``keptLineLength`` (standard error only).
    private var kept: [String] = []
    private let line: WorkerOutputLine
    private let writer: OutputWriter
    /// The worker's pid, once it is known (0 before).
    private let processID = Atomic<Int32>(0)

    /// Starts a relay for `worker`'s stdout or stderr (`target`); returns the write end
    /// of its pipe, to give to the worker, and the relay, to tell it the worker's pid.
    static func start(_ worker: WorkerID, target: Int32) throws(SystemError) -> (fd: Int32, relay: OutputRelay) {
        var ends: [Int32] = [0, 0]
        let error = baton_pipe(&ends)
        guard error == 0 else { throw SystemError("pipe2", errno: error, subject: "output of \(worker)") }
        let journal = target == STDERR_FILENO && LogLineHandler.standardErrorIsTheJournal()
        let line = WorkerOutputLine(
            worker: worker, stream: target == STDERR_FILENO ? "stderr" : "stdout",
            format: LogLineHandler.format, journal: journal)
        let relay = OutputRelay(line: line, writer: target == STDERR_FILENO ? .standardError : .standardOutput)
        // The watcher's handlers must not block: a readiness it reports can be stale (the
        // number closed and reused for this pipe within one batch of events), and a read
        // that waits would hold the watcher's lock, which the event loop takes to watch
        // a new worker's notify socket. Seen as a hung Baton in the hostile soak.
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        do throws(SystemError) {
            // The relay lives as long as the watcher holds its handler: until the worker
            // and every process that inherited its output have closed the pipe.
            relay.readEnd = ends[0]
            try DescriptorWatcher.shared.watch(ends[0], subject: "output of \(worker)") { fd in
                relay.lock.withLock { relay.drain(fd) }
            }
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
        return (ends[1], relay)
    }

    private init(line: WorkerOutputLine, writer: OutputWriter) {
        self.line = line
        self.writer = writer
    }

    /// Sets the pid that JSON lines carry.
    func started(_ pid: pid_t) {
        processID.store(pid, ordering: .relaxed)
    }

    /// The last lines the worker wrote on standard error (at most ``keptLines``, oldest
    /// first), after copying what its pipe still holds: a worker that wrote its reason
    /// and exited has its lines read before its exit is reported.
    func lastLines() -> [String] {
        lock.withLock {
            while !ended, readEnd >= 0, drain(readEnd, untilEmpty: true) {}
            return kept
        }
    }

    /// Copies what the pipe holds (one read, or every read until it is empty); false at
    /// its end. Called with `lock` held.
    private func drain(_ fd: Int32, untilEmpty: Bool = false) -> Bool {
        guard !ended else { return false }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else {
            if count < 0 && errno == EINTR { return true }
            if count < 0 && errno == EAGAIN { return !untilEmpty }
            flush()
            ended = true
            return false
        }
        pending.append(contentsOf: buffer[0..<count])
        var output: [UInt8] = []
        let pid = processID.load(ordering: .relaxed)
        var start = 0
        while true {
            let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n"))
            let end = newline ?? pending.endIndex
            // A line of exactly the longest length is passed whole, with its line feed.
            if end - start > Self.longestLine || (newline == nil && end - start == Self.longestLine) {
                output += line.render(pending[start..<(start + Self.longestLine)], pid: pid, continued: continuing)
                continuing = true
                start += Self.longestLine
            } else if let newline {
                output += line.render(pending[start..<newline], pid: pid, continued: continuing)
                keep(pending[start..<newline])
                continuing = false
                start = newline + 1
            } else {
                break
            }
        }
        pending.removeSubrange(..<start)
        writer.write(output)
        return true
    }

    private func flush() {
        guard !pending.isEmpty else { return }
        writer.write(line.render(pending[...], pid: processID.load(ordering: .relaxed), continued: continuing))
        keep(pending[...])
        pending = []
    }

    /// Keeps a line of standard error among the last ones, escaped as the log has it.
    private func keep(_ text: ArraySlice<UInt8>) {
        guard line.stream == "stderr" else { return }
        let escaped = WorkerOutputLine.escaped(text.prefix(Self.keptLineLength * 4))
        let trimmed = escaped.trimmingSpaces
        guard !trimmed.isEmpty else { return }
        kept.append(trimmed.count > Self.keptLineLength ? String(trimmed.prefix(Self.keptLineLength)) + "…" : trimmed)
        if kept.count > Self.keptLines { kept.removeFirst() }
    }
}

/// How one line of a worker's output is written among Baton's own lines.
struct WorkerOutputLine: Sendable {
    let worker: WorkerID
    /// `stdout` or `stderr`.
    let stream: String
    let format: LogFormat
    /// Standard error is the journal's stream: each line starts with its priority, so
    /// that a worker's `<3>` is text, not a priority journald would take.
    let journal: Bool

    /// One line, line feed included, for the bytes of `text` (without its line feed).
    func render(_ text: ArraySlice<UInt8>, pid: Int32, continued: Bool) -> [UInt8] {
        var line = journal ? "<6>" : ""
        let escaped = Self.escaped(text)
        switch format {
        case .text:
            line += "[\(worker)\(continued ? "+" : "")] \(escaped)"
        case .json:
            let time = LogLineHandler.now()
            line += "{\"time\":\(JSONText.string(time)),\"level\":\"info\",\"label\":\"worker\","
            line += "\"stream\":\"\(stream)\",\"generation\":\(worker.generation),\"slot\":\(worker.slot),"
            if pid > 0 { line += "\"pid\":\(pid)," }
            if continued { line += "\"continued\":true," }
            line += "\"text\":\(JSONText.string(escaped))}"
        }
        line += "\n"
        return Array(line.utf8)
    }

    /// `bytes` as text that a terminal shows as it is: control characters (but tab),
    /// DEL, C1 controls and bytes that are not UTF-8 become `\xNN` (or `\u{NN}` for a C1
    /// control), so no escape sequence, carriage return or line feed gets through.
    static func escaped(_ bytes: ArraySlice<UInt8>) -> String {
        let plain = bytes.allSatisfy { ($0 >= 0x20 && $0 < 0x7f) || $0 == 0x09 }
        if plain { return String(decoding: bytes, as: UTF8.self) }
        var text = ""
        text.reserveCapacity(bytes.count)
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = bytes.startIndex
        func hex(_ byte: UInt8) -> String {
            let digits = String(byte, radix: 16)
            return "\\x" + (digits.count == 1 ? "0" : "") + digits
        }
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                let scalar = Unicode.UTF8.decode(encoded)
                let length = encoded.count
                if scalar.value < 0x20 && scalar != "\t" || scalar.value == 0x7f {
                    text += hex(UInt8(scalar.value))
                } else if (0x80...0x9f).contains(scalar.value) {
                    text += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    text.unicodeScalars.append(scalar)
                }
                offset += length
            case .error(let length):
                for byte in bytes[offset..<(offset + length)] { text += hex(byte) }
                offset += length
            case .emptyInput:
                return text
            }
        }
    }
}

/// Writes relayed output to one of Baton's own descriptors from a thread of its own, so
/// that a reader who does not keep up (a full pipe, a stopped terminal) stalls only that
/// thread. What does not fit in ``capacity`` bytes waiting to be written is dropped,
/// whole lines at a time, and counted in ``droppedBytes``.
///
/// Baton's own log lines go to standard error through ``writeNow(_:)``, which takes the
/// same lock as this thread's writes: each write is whole lines, so a worker's line and
/// one of Baton's never share a line, however long either is.
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
    /// Held for every write to `target`: one lock for both writers when stdout and
    /// stderr are the same file (`2>&1`, the journal), so that lines of the two never
    /// share a line either.
    private let writing: NIOLock
    private static let standardStreamsLock = NIOLock()
    private let thread = Atomic<Bool>(false)

    private init(target: Int32) {
        self.target = target
        var output = stat()
        var error = stat()
        let same =
            fstat(STDOUT_FILENO, &output) == 0 && fstat(STDERR_FILENO, &error) == 0
            && output.st_dev == error.st_dev && output.st_ino == error.st_ino
        writing = same ? Self.standardStreamsLock : NIOLock()
    }

    /// Queues `bytes` (whole lines) to be written; drops them when the queue is full.
    func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if !thread.exchange(true, ordering: .acquiringAndReleasing) {
            Thread.detach { [self] in run() }
        }
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

    /// Writes `bytes` (whole lines) at once, waiting for the descriptor and for the
    /// relay's write under way: Baton's own lines are never dropped.
    func writeNow(_ bytes: UnsafeRawBufferPointer) {
        writing.withLock { _ = writeAll(bytes) }
    }

    private func run() {
        while true {
            condition.lock(whenValue: 1)
            let bytes = queued
            queued = []
            condition.unlock(withValue: 0)
            let written = writing.withLock { bytes.withUnsafeBytes { writeAll($0) } }
            // Nobody can read it (closed, or an error): what is left is lost too.
            Self.dropped.add(bytes.count - written, ordering: .relaxed)
        }
    }

    /// Writes `bytes`; returns how many were written (fewer only on an error).
    private func writeAll(_ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(target, bytes.baseAddress! + offset, bytes.count - offset)
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                break
            }
            offset += written
        }
        return offset
    }
}
