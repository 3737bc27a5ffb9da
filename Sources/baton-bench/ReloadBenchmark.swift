import Baton
import BatonLoad
import Foundation

/// `baton-demo` under `baton`, under closed-loop load, reloaded on a fixed schedule.
struct ReloadBenchmark {
    struct Plan {
        var workers = 2
        var duration: Duration = .seconds(60)
        var reloadInterval: Duration = .milliseconds(200)
        var mode: ConnectionMode = .newConnection
        var clients = 16
        var idle: Duration = .seconds(5)
    }

    let plan: Plan
    let products: String

    func run() throws -> ReloadBenchmarkResult {
        let scratch = NSTemporaryDirectory() + "baton-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let port = try LoadTarget.freeLoopbackPort()
        let controlSocket = "\(scratch)/baton.sock"
        let supervisor = try Self.startBaton([
            "--control", controlSocket, "--listen", "http=tcp://127.0.0.1:\(port)",
            "--workers", "\(plan.workers)", "--", "\(products)/baton-demo",
        ], products: products, log: "\(scratch)/baton.log")
        defer {
            if supervisor.isRunning {
                kill(supervisor.processIdentifier, SIGKILL)
                supervisor.waitUntilExit()
            }
        }
        try Self.waitUntilServing(controlSocket, supervisor: supervisor, log: "\(scratch)/baton.log")

        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.mode = plan.mode
        configuration.clients = plan.clients
        let load = LoadGenerator(configuration)
        let before = try ProcessUsage(pid: supervisor.processIdentifier)
        load.start()
        let clock = ContinuousClock()
        let end = clock.now + plan.duration
        var next = clock.now + plan.reloadInterval
        var reloads: [(start: Duration, took: Duration, reply: ControlReply?)] = []
        let origin = clock.now
        while next < end {
            Self.sleep(until: next)
            load.markEvent("reload-start")
            let started = clock.now
            let reply = try? ControlClient.send(ControlRequest(command: .reload, wait: true), to: controlSocket)
            load.markEvent("reload-end")
            reloads.append((started - origin, clock.now - started, reply))
            next = max(next + plan.reloadInterval, clock.now)
        }
        Self.sleep(until: end)
        let report = load.stop()
        let loaded = try ProcessUsage(pid: supervisor.processIdentifier)
        // Idle means nothing left to do: the last old generation has finished draining.
        try Self.waitUntilServing(controlSocket, supervisor: supervisor, log: "\(scratch)/baton.log")
        // Let it finish answering (and closing) that last status request first.
        Self.sleep(until: clock.now + .seconds(1))
        let settled = try ProcessUsage(pid: supervisor.processIdentifier)
        Self.sleep(until: clock.now + plan.idle)
        let idle = try ProcessUsage(pid: supervisor.processIdentifier)
        kill(supervisor.processIdentifier, SIGTERM)
        supervisor.waitUntilExit()

        return ReloadBenchmarkResult(
            plan: plan, report: report, reloadDurations: reloads.map(\.took),
            failedReloads: reloads.filter { $0.reply?.ok != true }.count,
            before: before, loaded: loaded, settled: settled, idle: idle, exitStatus: supervisor.terminationStatus)
    }

    private static func startBaton(_ arguments: [String], products: String, log: String) throws -> Process {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(products)/baton")
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return process
    }

    private static func waitUntilServing(_ controlSocket: String, supervisor: Process, log: String) throws {
        for _ in 0..<3000 {
            guard supervisor.isRunning else {
                throw BenchError("baton exited:\n" + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? ""))
            }
            if let status = try? ControlClient.send(ControlRequest(command: .status), to: controlSocket).status,
               status.phase == "running",
               let serving = status.generations.last(where: { $0.role == "serving" }),
               serving.workers.allSatisfy({ $0.state == "ready" }), status.generations.count == 1 {
                return
            }
            usleep(10_000)
        }
        throw BenchError("baton did not serve within 30 s; its log is \(log)")
    }

    /// Blocks this thread; the benchmark's schedule runs on the main thread.
    private static func sleep(until deadline: ContinuousClock.Instant) {
        let remaining = deadline - .now
        guard remaining > .zero else { return }
        Thread.sleep(forTimeInterval: Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18)
    }
}
