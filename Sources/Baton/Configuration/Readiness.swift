/// How Baton learns that a worker serves.
public enum Readiness: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The worker sends `READY=1` on `NOTIFY_SOCKET` (the sd_notify protocol).
    case notify
    /// A worker still alive after this long counts as ready.
    case delay(Duration)
    /// This shell command, run repeatedly, exits 0 once the worker serves. It sees
    /// `BATON_WORKER_PID`, `BATON_GENERATION` and `BATON_SLOT`.
    case exec(String)

    public var description: String {
        switch self {
        case .notify: "notify"
        case .delay(let duration): "delay:\(DurationFormat.string(duration))"
        case .exec(let command): "exec:\(command)"
        }
    }
}

extension Readiness {
    /// Reads the forms `description` writes: `notify`, `delay:2s`, `exec:COMMAND`.
    init(parsing text: String) throws(FormatError) {
        if text == "notify" {
            self = .notify
        } else if text.hasPrefix("delay:") {
            guard let duration = DurationFormat.parse(String(text.dropFirst(6))) else {
                throw FormatError("expected delay:<duration>, such as delay:2s")
            }
            guard duration <= Settings.longestDuration else {
                throw FormatError("out of range: expected delay:<duration> of \(DurationFormat.string(Settings.longestDuration)) or less")
            }
            self = .delay(duration)
        } else if text.hasPrefix("exec:") {
            let command = String(text.dropFirst(5))
            guard !command.isEmpty else { throw FormatError("expected exec:<shell command>") }
            self = .exec(command)
        } else {
            throw FormatError("expected notify, delay:<duration> or exec:<command>")
        }
    }
}
