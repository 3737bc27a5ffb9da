import BatonLoad
import Foundation

/// What every scenario is run with.
struct BenchPlan: Codable {
    var workers = 2
    var duration: Double = 60
    var reloadIntervalMilliseconds = 200
    var mode: ConnectionMode = .newConnection
    var clients = 16
    /// Requests per second for open-loop load; nil for closed loop.
    var rate: Double?
    /// Seconds of idleness over which Baton's CPU time and wake-ups are measured.
    var idle: Double = 5
    /// CPU time each of the control's do-nothing reloads spends in baton-bench, in
    /// milliseconds: what that much work alone does to the latency inside the windows.
    var controlCPUMilliseconds: Double = 0
}

/// Runs one scenario under load with a reload on a fixed schedule.
struct ScenarioRunner {
    let plan: BenchPlan
    let products: String
    /// Where the HAProxy and nginx configuration templates are.
    let configurations: String

    /// Why `scenario` cannot run on this machine, or nil.
    func unavailable(_ scenario: Scenario) -> String? {
        let kind: SelfReloadingServer.Kind
        switch scenario {
        case .haproxy: kind = .haproxy
        case .nginx: kind = .nginx
        case .serverStarter: kind = .serverStarter
        case .supervisordSignal, .supervisordRestart, .supervisordReload:
            for tool in [SupervisordServer.supervisord, SupervisordServer.supervisorctl, "/usr/bin/python3"]
            where !FileManager.default.isExecutableFile(atPath: tool) {
                return "\(tool) is not installed"
            }
            let units = "\(configurations)/../../Units/supervisord-baton.conf"
            return FileManager.default.fileExists(atPath: units) ? nil : "no \(units) (see --configurations)"
        case .deadSlotUnsteered, .rudeUnsteered:
            guard getuid() == 0, FileManager.default.isExecutableFile(atPath: BatonServer.setpriv) else {
                return "needs root and \(BatonServer.setpriv) to take CAP_BPF away from Baton"
            }
            return nil
        default: return nil
        }
        guard SelfReloadingServer.installed(kind) != nil else { return "\(kind.executable) is not installed" }
        if let template = kind.template, !FileManager.default.fileExists(atPath: "\(configurations)/\(template)") {
            return "no \(template) in \(configurations) (see --configurations)"
        }
        return nil
    }

    private func selfReloading(_ kind: SelfReloadingServer.Kind, port: Int, scratch: String) throws -> SelfReloadingServer {
        guard let executable = SelfReloadingServer.installed(kind) else { throw BenchError("\(kind.executable) is not installed") }
        return try SelfReloadingServer(
            kind, executable: executable, configurations: configurations, products: products,
            port: port, scratch: scratch)
    }

    /// `controlWindow`: how long the control scenario's do-nothing reloads last.
    func run(_ scenario: Scenario, controlWindow: Duration) throws -> ScenarioResult {
        let scratch = NSTemporaryDirectory() + "baton-bench-\(getpid())-\(scenario.rawValue)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let port = try LoadTarget.freeLoopbackPort()
        let server: ServerUnderTest =
            switch scenario {
            case .baton, .healthy: try BatonServer(products: products, port: port, workers: plan.workers, scratch: scratch)
            case .deadSlot, .deadSlotUnsteered:
                try BatonServer(
                    products: products, port: port, workers: plan.workers, scratch: scratch,
                    unsteered: scenario.unsteered, deadSlot: plan.workers - 1)
            case .rude, .rudeUnsteered:
                try BatonServer(
                    products: products, port: port, workers: plan.workers, scratch: scratch,
                    unsteered: scenario.unsteered, demoArguments: ["--rude-drain"])
            case .control:
                try BatonServer(
                    products: products, port: port, workers: plan.workers, scratch: scratch,
                    idleReload: .init(window: controlWindow, cpu: .microseconds(Int64(plan.controlCPUMilliseconds * 1000))))
            case .naive: try StandaloneServer(products: products, port: port, workers: plan.workers, drainPause: nil, stopFirst: false)
            case .naivePaused: try StandaloneServer(products: products, port: port, workers: plan.workers, drainPause: 10, stopFirst: false)
            case .stopStart: try StandaloneServer(products: products, port: port, workers: plan.workers, drainPause: nil, stopFirst: true)
            case .direct: try StandaloneServer(products: products, port: port, workers: plan.workers, drainPause: nil, stopFirst: false)
            case .haproxy: try selfReloading(.haproxy, port: port, scratch: scratch)
            case .nginx: try selfReloading(.nginx, port: port, scratch: scratch)
            case .serverStarter: try selfReloading(.serverStarter, port: port, scratch: scratch)
            case .supervisordSignal, .supervisordRestart, .supervisordReload:
                try SupervisordServer(
                    scenario == .supervisordSignal ? .signal : scenario == .supervisordRestart ? .restart : .reload,
                    units: "\(configurations)/../../Units", products: products, port: port, workers: plan.workers, scratch: scratch)
            }
        var stopped = false
        defer { if !stopped { _ = server.stop() } }

        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.mode = plan.mode
        configuration.clients = plan.clients
        configuration.rate = plan.rate
        let load = LoadGenerator(configuration)
        let before = try server.supervisorPID.map { try ProcessUsage(pid: $0) }
        load.start()
        let origin = ContinuousClock.now
        let end = origin + .milliseconds(Int64(plan.duration * 1000))
        let interval = Duration.milliseconds(plan.reloadIntervalMilliseconds)
        var reloadDurations: [Duration] = []
        var failedReloads = 0
        if scenario.reloads {
            var next = origin + interval
            while next < end {
                sleep(until: next)
                load.markEvent("reload-start")
                let started = ContinuousClock.now
                if !server.reload() { failedReloads += 1 }
                load.markEvent("reload-end")
                reloadDurations.append(.now - started)
                next = max(next + interval, .now)
            }
        }
        sleep(until: end)
        let report = load.stop()
        let loaded = try server.supervisorPID.map { try ProcessUsage(pid: $0) }

        var idle: (settled: ProcessUsage, after: ProcessUsage)?
        if scenario == .baton, let pid = server.supervisorPID {
            // Idle means nothing left to do: the last old generation has drained, and the
            // answer to the last status request has gone out.
            try server.settle()
            sleep(until: .now + .seconds(1))
            let settled = try ProcessUsage(pid: pid)
            sleep(until: .now + .milliseconds(Int64(plan.idle * 1000)))
            idle = (settled, try ProcessUsage(pid: pid))
        }
        stopped = true
        let exitStatus = server.stop()
        return ScenarioResult(
            scenario: scenario, plan: plan, report: report, reloadDurations: reloadDurations,
            failedReloads: failedReloads, supervisor: before.flatMap { before in loaded.map { (before, $0) } },
            idle: idle, exitStatus: exitStatus)
    }
}
