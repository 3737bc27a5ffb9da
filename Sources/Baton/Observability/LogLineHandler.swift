import Glibc
import Logging
import Synchronization

/// How Baton writes its log lines on standard error (`--log-format`).
public enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-12-01T12:00:00.123Z info baton: generation=2 slot=0 pid=4711 started worker g2/s0 (pid 4711)`
    case text
    /// One JSON object a line: `time`, `level`, `label`, `message`, then the metadata
    /// (`generation`, `slot`, `pid` on a worker's lines, `reload` on a reload's).
    case json
}

/// Writes each log line to standard error with one `write`, in ``LogFormat``; when
/// standard error is the journal's stream (`JOURNAL_STREAM`), each line starts with its
/// syslog priority (`<6>`), which journald takes as the entry's `PRIORITY=` and strips.
public struct LogLineHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: LogFormat
    private let journal: Bool

    public init(
        label: String, level: Logger.Level, format: LogFormat, metadataProvider: Logger.MetadataProvider?,
        journal: Bool = LogLineHandler.standardErrorIsTheJournal()
    ) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.metadataProvider = metadataProvider
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let given = event.metadata { merged.merge(given) { _, new in new } }
        var line = journal ? "<\(Self.priority(event.level))>" : ""
        line += Self.line(
            format: format, time: Self.now(), level: event.level, label: label,
            message: event.message.description, metadata: merged)
        line += "\n"
        // Through the relay's writer of standard error, so that no worker line is
        // written into the middle of this one.
        line.withUTF8 { OutputWriter.standardError.writeNow(UnsafeRawBufferPointer($0)) }
    }

    /// The format of Baton's log, which the relays of workers' output follow too.
    static var format: LogFormat { bootstrapped.withLock { $0 } }
    private static let bootstrapped = Mutex<LogFormat>(.text)

    /// Makes every `Logger` write through this handler, at `level` and in `format`.
    public static func bootstrap(level: Logger.Level, format: LogFormat) {
        bootstrapped.withLock { $0 = format }
        LoggingSystem.bootstrap(
            { label, provider in
                LogLineHandler(label: label, level: level, format: format, metadataProvider: provider)
            }, metadataProvider: LogMetadata.provider)
    }

    /// One line, without its line feed. Metadata keys in a fixed order: those that say
    /// which worker and which reload first, then the others sorted.
    static func line(
        format: LogFormat, time: String, level: Logger.Level, label: String, message: String,
        metadata: Logger.Metadata
    ) -> String {
        let keys = metadata.keys.sorted { (rank($0), $0) < (rank($1), $1) }
        switch format {
        case .text:
            let fields = keys.map { "\($0)=\(metadata[$0]!)" }.joined(separator: " ")
            return "\(time) \(level) \(label): \(fields.isEmpty ? "" : fields + " ")\(message)"
        case .json:
            var object = "{\"time\":\(JSONText.string(time)),\"level\":\(JSONText.string(level.rawValue)),"
            object += "\"label\":\(JSONText.string(label)),\"message\":\(JSONText.string(message))"
            for key in keys where !["time", "level", "label", "message"].contains(key) {
                object += ",\(JSONText.string(key)):\(JSONText.value(metadata[key]!))"
            }
            return object + "}"
        }
    }

    private static func rank(_ key: String) -> Int {
        ["reload", "generation", "slot", "pid"].firstIndex(of: key) ?? 4
    }

    /// The syslog priority of a level, as sd-daemon(3) prefixes lines.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Whether standard error is the stream systemd connected to the journal: the device
    /// and inode in `JOURNAL_STREAM` are standard error's (systemd.exec(5)).
    public static func standardErrorIsTheJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return false }
        return value == "\(status.st_dev):\(status.st_ino)"
    }

    /// Now in UTC, to the millisecond: `2026-12-01T12:00:00.123Z`.
    static func now() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var parts = tm()
        var seconds = time.tv_sec
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = time.tv_nsec / 1_000_000
        let fraction = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}

/// The bits of JSON a log line needs.
enum JSONText {
    static func string(_ text: String) -> String {
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }

    /// Integers stay numbers; everything else is a string, an array or an object.
    static func value(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): string(text)
        case .stringConvertible(let convertible):
            if let integer = convertible as? any BinaryInteger { "\(integer)" } else { string(convertible.description) }
        case .array(let values): "[" + values.map(Self.value).joined(separator: ",") + "]"
        case .dictionary(let values):
            "{" + values.sorted { $0.key < $1.key }.map { "\(string($0.key)):\(Self.value($0.value))" }.joined(separator: ",") + "}"
        }
    }
}
