import BatonCore
import CBatonShim
import Glibc
import NIOCore

/// The new binary's proof, before `batonctl upgrade` executes it in Baton's place.
///
/// An `execve` cannot be taken back: a new binary that then exits, crashes or hangs
/// would take the service down with it (its workers drain through their parent-death
/// signal). So Baton first runs the new file as a child of its own, with Baton's
/// arguments and the handover it is about to pass, and with ``variable`` set: the new
/// binary must parse them, read the handover and say ``answer`` on its output within
/// ``deadline``, touching nothing (no socket, no directory, no worker). Only then does
/// Baton execute it in its own place. A binary that exits, crashes, hangs or says
/// nothing fails the upgrade with what it did, and this Baton carries on.
public final class UpgradeTrial: @unchecked Sendable {  // owned by the event loop
    /// Set in the trial's environment: read the handover, answer, exit.
    static let variable = "BATON_UPGRADE_TRIAL"
    /// The line a new binary that read the handover writes on its standard output.
    static let answer = "baton upgrade trial: the handover was read"
    /// How long the new binary has to answer; less than the 30 s `batonctl` waits for a reply.
    static let deadline: Duration = .seconds(10)
    /// At most this much of the trial's output is kept, for the reason of a failure.
    private static let outputLimit = 64 * 1024

    let pid: pid_t
    /// Who asked for the upgrade, answered once the trial is over.
    let responder: ControlResponder
    private let executable: String
    private let output: Int32
    private var killed = false
    private var deadlineTask: Scheduled<Void>?

    /// Starts `executable` on trial, with this process's arguments and `handover`;
    /// from the main thread, so that the trial dies with Baton (``MainThread``).
    static func start(_ executable: String, _ handover: UpgradeHandover, responder: ControlResponder) throws -> UpgradeTrial {
        var pipe: [Int32] = [-1, -1]
        let error = baton_pipe(&pipe)
        guard error == 0 else { throw SystemError("pipe2", errno: error, subject: "upgrade trial output") }
        defer { close(pipe[1]) }
        // Read once the trial has exited: all it wrote is there, and no more will come.
        _ = fcntl(pipe[0], F_SETFL, O_NONBLOCK)
        var environment = ProcessSpawner.inheritedEnvironment()
        environment[UpgradeHandover.variable] = handover.encoded()
        environment[variable] = "1"
        let request = ProcessSpawner.Request(
            command: [executable] + CommandLine.arguments.dropFirst(), environment: environment,
            parentDeathSignal: SIGKILL, stdout: pipe[1], stderr: pipe[1])
        do {
            let pid = try ProcessSpawner.spawn(request)
            return UpgradeTrial(pid: pid, responder: responder, executable: executable, output: pipe[0])
        } catch {
            close(pipe[0])
            throw error
        }
    }

    private init(pid: pid_t, responder: ControlResponder, executable: String, output: Int32) {
        self.pid = pid
        self.responder = responder
        self.executable = executable
        self.output = output
    }

    /// Kills the trial (its whole session) if it has not exited by the deadline; its
    /// exit then arrives as usual.
    func watch(on eventLoop: EventLoop) {
        deadlineTask = eventLoop.scheduleTask(in: .seconds(Self.deadline.components.seconds)) { [self] in
            killed = true
            Glibc.kill(-pid, SIGKILL)
        }
    }

    /// After the trial's exit with `status` (negative: killed by that signal): nil when
    /// the new binary proved itself, else what it did, with its last lines of output.
    func failure(status: Int32) -> String? {
        deadlineTask?.cancel()
        // What it started ends with it.
        Glibc.kill(-pid, SIGKILL)
        let text = readOutput()
        close(output)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if status == 0 && !killed && lines.contains(Self.answer) { return nil }
        let what: String
        if killed {
            what = "did not prove itself within \(DurationFormat.string(Self.deadline)) (it was killed)"
        } else if status < 0 {
            what = "was killed by \(SignalName.name(-status)) before it read the handover"
        } else if status != 0 {
            what = "exited with status \(status) before it read the handover"
        } else {
            what = "exited with status 0 without reading the handover (not a Baton that can take over from this one?)"
        }
        let last = lines.filter { $0 != Self.answer }.suffix(5).map { String($0.prefix(300)) }
        let said = last.isEmpty ? "it wrote nothing" : "its last output: \(last.joined(separator: " | "))"
        return "\(executable) \(what); \(said)"
    }

    private func readOutput() -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(output, &buffer, buffer.count)
            guard count > 0 else { break }
            bytes += buffer.prefix(count)
            if bytes.count > Self.outputLimit { bytes.removeFirst(bytes.count - Self.outputLimit) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// In the new binary, first thing: when Baton runs it on trial, reads the handover
    /// and answers, and returns true: the process should then exit 0 having done
    /// nothing else. Throws when the handover cannot be read.
    public static func answerIfAsked() throws -> Bool {
        guard getenv(variable) != nil else { return false }
        unsetenv(variable)
        guard try UpgradeHandover.take() != nil else {
            throw SystemError("getenv(\(UpgradeHandover.variable))", errno: ENOENT, subject: "upgrade trial without a handover")
        }
        let line = answer + "\n"
        _ = line.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
        return true
    }
}
