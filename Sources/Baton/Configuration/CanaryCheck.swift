/// `canary_check = "exec:COMMAND"`: a shell command Baton runs every `canary_check_interval`
/// while a canary holds; `canary_check_failures` failures in a row roll the canary back
/// (Docs/rollouts.md). Like the `exec:` readiness probe, it sees `BATON_WORKER_PID`,
/// `BATON_GENERATION` and `BATON_SLOT`, naming the canary's first worker.
public struct CanaryCheck: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Run by `/bin/sh -c`; exit status 0 is a pass.
    var command: String

    init(command: String) {
        self.command = command
    }

    public var description: String { "exec:\(command)" }

    /// Reads the form `description` writes: `exec:COMMAND`.
    init(parsing text: String) throws(FormatError) {
        guard text.hasPrefix("exec:") else { throw FormatError("expected exec:<shell command>") }
        let command = String(text.dropFirst(5))
        guard command.contains(where: { $0 != " " && $0 != "\t" }) else { throw FormatError("expected exec:<shell command>, the command is empty") }
        self.command = command
    }
}
