import ArgumentParser
import BatonCore
import BatonLoad
import Foundation

/// One way of running `baton-demo` and of reloading it, measured under the same load.
enum Scenario: String, CaseIterable, ExpressibleByArgument, Codable {
    /// Baton holds the sockets; a reload starts a new generation on them.
    case baton
    /// Each generation binds its own `SO_REUSEPORT` socket; the old one closes its socket.
    case naive
    /// The same, but the old generation pauses accepting for 10 ms before it closes, as a
    /// busy server's queue would hold connections.
    case naivePaused = "naive-paused"
    /// The old generation stops, then the new one starts.
    case stopStart = "stop-start"
    /// Baton serving, with a reload action that does nothing for as long as Baton's
    /// reloads take: what the load itself costs on this machine.
    case control
    /// `baton-demo` bound directly, no Baton and no reloads: the throughput reference.
    case direct
    /// HAProxy 2.6 in master-worker mode answering by itself, reloaded with SIGUSR2.
    case haproxy
    /// nginx answering by itself, reloaded with SIGHUP.
    case nginx
    /// Server::Starter holding the socket for one baton-demo, reloaded with SIGHUP.
    case serverStarter = "server-starter"
    /// Baton as a supervisord program (`Units/supervisord-baton.conf`), reloaded with
    /// `supervisorctl signal HUP`.
    case supervisordSignal = "supervisord-signal"
    /// The same, "reloaded" with `supervisorctl restart`: Baton stops, a new one starts.
    case supervisordRestart = "supervisord-restart"
    /// The same, "reloaded" with `supervisorctl reload`: supervisord restarts itself and
    /// every program.
    case supervisordReload = "supervisord-reload"

    var summary: String {
        switch self {
        case .baton: "Baton reloads baton-demo on the sockets it holds"
        case .naive: "naive SO_REUSEPORT restart: new sockets, then the old ones close"
        case .naivePaused: "naive restart, old generation pauses accepting 10 ms before it closes"
        case .stopStart: "stop the old generation, then start the new one"
        case .control: "Baton serving; the reload action does nothing"
        case .direct: "baton-demo bound directly, no reloads"
        case .haproxy: "HAProxy (master-worker) answering by itself, reloaded with SIGUSR2 (not baton-demo)"
        case .nginx: "nginx answering by itself, reloaded with SIGHUP (not baton-demo)"
        case .serverStarter: "Server::Starter holding the socket for one baton-demo, reloaded with SIGHUP"
        case .supervisordSignal: "Baton under supervisord, reloaded with `supervisorctl signal HUP`"
        case .supervisordRestart: "Baton under supervisord, restarted with `supervisorctl restart`"
        case .supervisordReload: "Baton under supervisord, which restarts itself: `supervisorctl reload`"
        }
    }

    var reloads: Bool { self != .direct }
}

/// A server running in one scenario.
protocol ServerUnderTest {
    /// Performs one reload; true when the new generation serves.
    func reload() -> Bool
    /// The supervisor's pid, when there is one.
    var supervisorPID: Int32? { get }
    /// Waits until nothing is left to do (no generation draining).
    func settle() throws
    /// Stops everything; the supervisor's exit status, when there is one.
    func stop() -> Int32?
}

/// `baton` with `baton-demo` workers.
final class BatonServer: ServerUnderTest {
    private let process = Process()
    private let controlSocket: String
    private let logPath: String
    /// For the control scenario: how long a reload that does nothing lasts.
    private let idleReload: Duration?

    init(products: String, port: Int, workers: Int, scratch: String, idleReload: Duration? = nil) throws {
        controlSocket = "\(scratch)/baton.sock"
        logPath = "\(scratch)/baton.log"
        self.idleReload = idleReload
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: "\(products)/baton")
        process.arguments = [
            "--control", controlSocket, "--listen", "http=tcp://127.0.0.1:\(port)",
            "--workers", "\(workers)", "--log-level", "warning", "--", "\(products)/baton-demo",
        ]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try settle()
    }

    var supervisorPID: Int32? { process.processIdentifier }

    func reload() -> Bool {
        if let idleReload {
            sleep(until: .now + idleReload)
            return true
        }
        return (try? ControlClient.send(ControlRequest(command: .reload, wait: true), to: controlSocket))?.ok == true
    }

    func settle() throws {
        for _ in 0..<3000 {
            guard process.isRunning else {
                throw BenchError("baton exited:\n" + ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""))
            }
            if let status = try? ControlClient.send(ControlRequest(command: .status), to: controlSocket).status,
               status.phase == .running, status.generations.count == 1,
               status.generations[0].workers.allSatisfy({ $0.state == .ready }) {
                return
            }
            usleep(10_000)
        }
        throw BenchError("baton did not settle within 30 s; its log: \(logPath)")
    }

    func stop() -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// `baton-demo` processes reloaded by the benchmark itself.
final class StandaloneServer: ServerUnderTest {
    private let servers: StandaloneServers
    private let stopFirst: Bool

    init(products: String, port: Int, workers: Int, drainPause: Int?, stopFirst: Bool) throws {
        servers = StandaloneServers(
            executable: "\(products)/baton-demo", port: port,
            extraArguments: drainPause.map { ["--drain-pause-ms", "\($0)"] } ?? [])
        self.stopFirst = stopFirst
        try servers.launch(count: workers)
    }

    var supervisorPID: Int32? { nil }

    func reload() -> Bool {
        (try? servers.replace(waitForExit: stopFirst)) != nil
    }

    func settle() throws {}

    func stop() -> Int32? {
        servers.stopAll()
        return nil
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
