import BatonCore
import Foundation

/// Baton with `baton-demo` workers as a supervisord program, from `Units/supervisord-baton.conf`
/// with its paths and port filled in, under a private supervisord in the foreground; each
/// "reload" is one `supervisorctl` command, so that what each costs clients can be
/// measured (Docs/supervisord.md).
final class SupervisordServer: ServerUnderTest {
    enum Action {
        /// `supervisorctl signal HUP`: Baton's own reload.
        case signal
        /// `supervisorctl restart`: stop Baton (it drains), then start a new one.
        case restart
        /// `supervisorctl reload`: supervisord stops every program, restarts itself and
        /// starts them again.
        case reload
    }

    static let supervisord = "/usr/bin/supervisord"
    static let supervisorctl = "/usr/bin/supervisorctl"
    static let program = "baton-demo"

    private let action: Action
    private let supervisor: ServerProcess
    private let configuration: String
    private let controlSocket: String

    init(_ action: Action, units: String, products: String, port: Int, workers: Int, scratch: String) throws {
        self.action = action
        configuration = "\(scratch)/supervisord.conf"
        controlSocket = "\(scratch)/baton.sock"
        var program = try String(contentsOfFile: "\(units)/supervisord-baton.conf", encoding: .utf8)
        for (from, to) in [
            ("/usr/local/bin/", products + "/"), ("127.0.0.1:8080", "127.0.0.1:\(port)"),
            ("--workers 4", "--workers \(workers)"), ("/run/baton-demo.sock", controlSocket),
            ("/var/log/supervisor/baton-demo.log", "\(scratch)/baton-demo.log"),
        ] {
            guard program.contains(from) else { throw BenchError("\(units)/supervisord-baton.conf no longer mentions \(from)") }
            program = program.replacingOccurrences(of: from, with: to)
        }
        try program.write(toFile: "\(scratch)/baton-demo.conf", atomically: true, encoding: .utf8)
        try """
        [unix_http_server]
        file=\(scratch)/supervisor.sock
        [supervisord]
        nodaemon=true
        logfile=\(scratch)/supervisord.log
        pidfile=\(scratch)/supervisord.pid
        childlogdir=\(scratch)
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [supervisorctl]
        serverurl=unix://\(scratch)/supervisor.sock
        [include]
        files=\(scratch)/baton-demo.conf

        """.write(toFile: configuration, atomically: true, encoding: .utf8)
        // Through Debian's Python, which clears an inherited signal mask (supervisord must
        // see its SIGTERM) and executes supervisord in its place.
        supervisor = try ServerProcess([Self.supervisord, "--nodaemon", "--configuration", configuration])
        try settle()
    }

    var supervisorPID: Int32? { nil }

    func reload() -> Bool {
        switch action {
        case .signal:
            guard let before = servingGeneration(),
                control("signal", "HUP", Self.program)
            else { return false }
            return (try? waitUntilServing { $0 > before }) != nil
        case .restart:
            // Returns once the new Baton has been up for startsecs.
            return control("restart", Self.program) && (try? settle()) != nil
        case .reload:
            // Returns at once; supervisord restarts meanwhile.
            return control("reload") && (try? settle()) != nil
        }
    }

    /// Baton running, its serving generation ready.
    func settle() throws {
        try waitUntilServing { _ in true }
    }

    func stop() -> Int32? {
        kill(supervisor.processIdentifier, SIGTERM)
        supervisor.waitUntilExit()
        return supervisor.terminationStatus
    }

    /// Runs `supervisorctl ARGUMENTS`; whether it succeeded. Spawned and waited for
    /// directly (``ServerProcess``): Foundation's `Process.waitUntilExit` was seen to hang
    /// on an exited `supervisorctl reload` here.
    private func control(_ arguments: String...) -> Bool {
        guard let process = try? ServerProcess([Self.supervisorctl, "--configuration", configuration] + arguments) else {
            return false
        }
        process.waitUntilExit()
        // -1: reaped by someone else, its status unknown; what follows checks the outcome.
        return process.terminationStatus == 0 || process.terminationStatus == -1
    }

    private func servingGeneration() -> Int? {
        guard let status = try? ControlClient.send(ControlRequest(command: .status), to: controlSocket).status,
            status.phase == .running
        else { return nil }
        return status.generations.last { $0.role == .serving && $0.workers.allSatisfy { $0.state == .ready } }?.number
    }

    private func waitUntilServing(_ generation: (Int) -> Bool) throws {
        for _ in 0..<3000 {
            guard supervisor.isRunning else { throw BenchError("supervisord exited") }
            if let serving = servingGeneration(), generation(serving) { return }
            usleep(10_000)
        }
        throw BenchError("Baton under supervisord did not serve within 30 s; see \(configuration)")
    }
}
