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
    /// Baton serving with every slot healthy, no reloads: the reference for `dead-slot`.
    case healthy
    /// Baton serving with its last slot crash-looping (its worker exits at every start),
    /// no reloads: new connections are steered to the live slots.
    case deadSlot = "dead-slot"
    /// The same without CAP_BPF: steering is off and the kernel's hash spreads new
    /// connections over every slot's socket, the dead one's included.
    case deadSlotUnsteered = "dead-slot-unsteered"
    /// Baton reloading a server that, on its drain signal, exits at once and drops what
    /// it accepted (`baton-demo --rude-drain`).
    case rude
    /// The same without CAP_BPF: generations share their sockets, and the old workers
    /// accept until their drain signal.
    case rudeUnsteered = "rude-unsteered"

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
        case .healthy: "Baton serving, every slot healthy, no reloads"
        case .deadSlot: "Baton serving with its last slot crash-looping, steering on, no reloads"
        case .deadSlotUnsteered: "the same without CAP_BPF: the kernel's hash includes the dead slot"
        case .rude: "Baton reloading a server that drops what it accepted when told to drain, steering on"
        case .rudeUnsteered: "the same without CAP_BPF: generations share their sockets"
        }
    }

    var reloads: Bool { ![.direct, .healthy, .deadSlot, .deadSlotUnsteered].contains(self) }

    /// Scenarios that take CAP_BPF away from Baton with `setpriv`.
    var unsteered: Bool { self == .deadSlotUnsteered || self == .rudeUnsteered }
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
    private let process: ServerProcess
    let controlSocket: String
    private let logPath: String
    /// For the control scenario: a reload that starts nothing and asks Baton nothing.
    struct IdleReload {
        /// How long it lasts, at least.
        var window: Duration
        /// CPU time it spends first, on the calling thread.
        var cpu: Duration
    }
    private let idleReload: IdleReload?

    /// The program that takes CAP_BPF away from Baton for the unsteered scenarios.
    static let setpriv = "/usr/bin/setpriv"

    /// `unsteered`: Baton runs without CAP_BPF (as root, under `setpriv`). `deadSlot`:
    /// that slot's worker exits at every start once Baton serves. `demoArguments` go to
    /// every `baton-demo`.
    init(
        products: String, port: Int, workers: Int, scratch: String, idleReload: IdleReload? = nil,
        unsteered: Bool = false, deadSlot: Int? = nil, demoArguments: [String] = []
    ) throws {
        controlSocket = "\(scratch)/baton.sock"
        logPath = "\(scratch)/baton.log"
        self.idleReload = idleReload
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        var command = ["\(products)/baton-demo"] + demoArguments
        let marker = "\(scratch)/dead-slot"
        if let deadSlot {
            let script = "\(scratch)/worker.sh"
            try """
            if [ "$BATON_SLOT" = \(deadSlot) ] && [ -e \(marker) ]; then exit 3; fi
            exec \(command.joined(separator: " "))
            """.write(toFile: script, atomically: true, encoding: .utf8)
            command = ["/bin/sh", script]
        }
        let baton =
            [
                "\(products)/baton", "--control", controlSocket, "--listen", "http=tcp://127.0.0.1:\(port)",
                "--workers", "\(workers)", "--log-level", "warning", "--",
            ] + command
        let launcher = unsteered ? [Self.setpriv, "--bounding-set", "-bpf,-sys_admin", "--inh-caps", "-bpf,-sys_admin", "--"] : []
        process = try ServerProcess(launcher + baton, stdout: log.fileDescriptor, stderr: log.fileDescriptor)
        try? log.close()
        try settle()
        if let deadSlot {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            let status = try ControlClient.send(ControlRequest(command: .status), to: controlSocket).status
            if let pid = status?.generations.first?.workers.first(where: { $0.slot == deadSlot })?.pid {
                kill(pid, SIGKILL)
            }
            try waitForStatus("slot \(deadSlot) crash-looping") { $0.generations.first?.crashLoopingSlots.contains(deadSlot) == true }
        }
    }

    var supervisorPID: Int32? { process.processIdentifier }

    func reload() -> Bool {
        if let idleReload {
            let end = ContinuousClock.now + idleReload.window
            spendCPU(idleReload.cpu)
            sleep(until: end)
            return true
        }
        return (try? ControlClient.send(ControlRequest(command: .reload, wait: true), to: controlSocket))?.ok == true
    }

    func settle() throws {
        try waitForStatus("settle") { status in
            status.phase == .running && status.generations.count == 1
                && status.generations[0].workers.allSatisfy { $0.state == .ready }
        }
    }

    private func waitForStatus(_ what: String, _ condition: (StatusReport) -> Bool) throws {
        for _ in 0..<3000 {
            guard process.isRunning else {
                throw BenchError("baton exited:\n" + ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""))
            }
            if let status = try? ControlClient.send(ControlRequest(command: .status), to: controlSocket).status, condition(status) {
                return
            }
            usleep(10_000)
        }
        throw BenchError("baton did not \(what) within 30 s; its log: \(logPath)")
    }

    func stop() -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// Keeps the calling thread busy until it has run for `time` (thread CPU time, not
/// elapsed: on a loaded machine the wait is longer).
private func spendCPU(_ time: Duration) {
    func now() -> Duration {
        var clock = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &clock)
        return .seconds(clock.tv_sec) + .nanoseconds(clock.tv_nsec)
    }
    let until = now() + time
    while now() < until {}
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
