import ArgumentParser
import BatonLoad
import Foundation

// baton-bench: reloads under load, measured side by side. See Docs/benchmarks.md.
BenchCommand.main()

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-bench",
        abstract: "Reload baton-demo under HTTP load in several ways, side by side, and report what clients saw.",
        discussion: """
            Scenarios: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")).
            Prints a Markdown report; --json and --svg write the figures and a chart. Exits 1 if a request failed under Baton \
            (baton, healthy, dead-slot, rude).
            """)

    @Option(parsing: .upToNextOption, help: "Scenarios to run, in order.")
    var scenarios: [Scenario] = [.baton]

    @Option(help: "Worker processes.")
    var workers = 2

    @Option(help: "Seconds of load per scenario.")
    var duration: Double = 60

    @Option(help: "Milliseconds between the starts of two reloads.")
    var reloadEvery = 200

    @Option(help: "new-connection or keep-alive.")
    var mode: ConnectionMode = .newConnection

    @Option(help: "Concurrent clients.")
    var clients = 16

    @Option(help: "Open loop: requests per second over all clients (default: closed loop).")
    var rate: Double?

    @Option(help: "Seconds of idleness after Baton's run, over which its CPU time and wake-ups are measured.")
    var idle: Double = 5

    @Option(
        help:
            "Milliseconds of CPU time each of the control's do-nothing reloads spends in baton-bench: what that much work alone, with no process started, does to latency."
    )
    var controlCPU: Double = 0

    @Option(parsing: .upToNextOption, help: "Also measure reload time with each of these numbers of workers, without load.")
    var scaling: [Int] = []

    @Option(help: "Write every figure as JSON to this file.")
    var json: String?

    @Option(help: "Write the Markdown report to this file too.")
    var markdown: String?

    @Option(help: "Write an SVG chart of latency and failures over time to this file.")
    var svg: String?

    @Option(help: "Directory holding baton and baton-demo (default: next to baton-bench).")
    var products: String?

    @Option(help: "Directory holding the haproxy.cfg and nginx.conf templates.")
    var configurations = "Docs/bench"

    @Option(help: "Instead of the scenarios: this many reloads back to back under light load, sampling Baton's descriptors, threads, RSS and zombies.")
    var soak: Int?

    @Option(help: "With --soak: reloads between two samples.")
    var sampleEvery = 1000

    @Flag(
        help:
            "Instead of the scenarios: how long a replaced generation stays, idle and under wrk's keep-alive load (--duration seconds of reloads every --reload-every ms; rolling reloads of 4 and 16 workers)."
    )
    var drainTiming = false

    @Option(help: "With --drain-timing: wrk's keep-alive connections.")
    var connections = 64

    @Flag(
        help:
            "Instead of the scenarios: the cost per datagram of a UDP listener's flows (none, tuple, quic) against no steering program, and QUIC connections broken per 1,000 reloads in each mode."
    )
    var flows = false

    @Option(help: "With --flows: datagrams sent through each listener.")
    var flowDatagrams = 200_000

    @Option(help: "With --flows: reloads per mode under QUIC load (0 skips it; needs aioquic).")
    var flowReloads = 10

    @Option(help: "With --flows: the folder of quic_server.py and quic_client.py.")
    var quicServers = "Tests/BatonIntegrationTests/Servers/quic"

    func run() throws {
        let directory =
            products
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().path
        if let soak {
            guard soak > 0, sampleEvery > 0 else { throw ValidationError("--soak and --sample-every must be positive") }
            let (samples, load) = try Soak(products: directory, workers: workers, reloads: soak, every: sampleEvery).run()
            let text = Soak.markdown(samples, load: load, workers: workers)
            print(text)
            if let markdown { try text.write(toFile: markdown, atomically: true, encoding: .utf8) }
            // Against the first sample after a warm-up, with a margin for a control
            // connection still closing when the sample is taken.
            let grew =
                samples.count > 2
                && (samples[samples.count - 1].descriptors > samples[1].descriptors + 2
                    || samples[samples.count - 1].threads > samples[1].threads + 2)
            if load.totalFailures > 0 || samples.contains(where: { $0.zombies > 0 || $0.failedReloads > 0 }) || grew {
                throw ExitCode(1)
            }
            return
        }
        if drainTiming {
            let timing = DrainTiming(products: directory, seconds: duration, reloadEvery: reloadEvery, connections: connections)
            let (idle, busy) = try timing.run()
            let text = DrainTiming.markdown(idle: idle, busy: busy, seconds: duration, reloadEvery: reloadEvery, connections: connections)
            print(text)
            if let markdown { try text.write(toFile: markdown, atomically: true, encoding: .utf8) }
            // wrk prints these lines only when a request failed.
            if let wrk = busy.wrkRequests, wrk.contains("Socket errors") || wrk.contains("Non-2xx") { throw ExitCode(1) }
            return
        }
        if flows {
            let bench = FlowBench(products: directory, quicServers: quicServers, datagrams: flowDatagrams, reloads: flowReloads)
            log("measuring the steering program's cost per datagram")
            let cost = try bench.costPerDatagram()
            var breaks: [String: Double]?
            if flowReloads > 0 {
                log("counting QUIC connections broken across \(flowReloads) reloads per mode")
                breaks = try bench.quicBreaksPerThousandReloads()
            }
            let text = bench.markdown(cost: cost, breaks: breaks)
            print(text)
            if let markdown { try text.write(toFile: markdown, atomically: true, encoding: .utf8) }
            if let breaks, (breaks["quic"] ?? 0) > 0 || (breaks["tuple"] ?? 0) > 0 { throw ExitCode(1) }
            return
        }
        guard controlCPU >= 0, controlCPU <= Double(reloadEvery) else {
            throw ValidationError("--control-cpu must be from 0 to --reload-every (\(reloadEvery)) milliseconds")
        }
        let plan = BenchPlan(
            workers: workers, duration: duration, reloadIntervalMilliseconds: reloadEvery,
            mode: mode, clients: clients, rate: rate, idle: idle, controlCPUMilliseconds: controlCPU)
        let runner = ScenarioRunner(plan: plan, products: directory, configurations: configurations)
        var results: [ScenarioResult] = []
        for scenario in scenarios {
            if let reason = runner.unavailable(scenario) {
                log("skipping \(scenario.rawValue): \(reason)")
                continue
            }
            log("running \(scenario.rawValue): \(scenario.summary)")
            // The control's do-nothing reloads last as long as Baton's did.
            let window = results.first { $0.scenario == .baton }?.reloadMilliseconds?.p50 ?? 30
            results.append(try runner.run(scenario, controlWindow: .microseconds(Int64(window * 1000))))
        }
        log("measuring the start-up of \(workers) baton-demo processes without Baton")
        let startup = try Measurements.workerStartup(products: directory, workers: workers, samples: 20)
        var points: [BenchReport.ScalingPoint] = []
        for count in [workers] + scaling.filter({ $0 != workers }) {
            log("measuring reloads with \(count) workers")
            points.append(.init(workers: count, reloadMilliseconds: try Measurements.reloadTime(products: directory, workers: count, reloads: 5)))
        }
        let report = BenchReport(
            plan: plan, machine: Measurements.machine(), scenarios: results,
            workerStartupMilliseconds: startup, scaling: points)
        print(report.markdown)
        if let markdown {
            try report.markdown.write(toFile: markdown, atomically: true, encoding: .utf8)
        }
        if let svg {
            try TimelineChart.svg(report).write(toFile: svg, atomically: true, encoding: .utf8)
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        }
        for scenario in [Scenario.baton, .healthy, .deadSlot, .rude] {
            if let result = report.result(scenario), result.failedRequests > 0 || result.failedReloads > 0 {
                throw ExitCode(1)
            }
        }
    }

    private func log(_ message: String) {
        FileHandle.standardError.write(Data("baton-bench: \(message)\n".utf8))
    }
}

extension ConnectionMode: ExpressibleByArgument {}

/// Figures measured without load.
enum Measurements {
    /// Milliseconds from starting `workers` `baton-demo` processes at once until each has
    /// sent `READY=1`, without Baton and without load.
    static func workerStartup(products: String, workers: Int, samples: Int) throws -> ScenarioResult.Percentiles? {
        let servers = StandaloneServers(executable: "\(products)/baton-demo", port: try LoadTarget.freeLoopbackPort())
        var times: [Double] = []
        for _ in 0..<samples {
            let started = ContinuousClock.now
            let processes = try servers.start(count: workers)
            times.append((ContinuousClock.now - started).milliseconds)
            for process in processes {
                kill(process.processIdentifier, SIGTERM)
                process.waitUntilExit()
            }
        }
        return ScenarioResult.Percentiles(times)
    }

    /// Milliseconds per reload of `workers` workers, without load.
    static func reloadTime(products: String, workers: Int, reloads: Int) throws -> ScenarioResult.Percentiles? {
        let scratch = NSTemporaryDirectory() + "baton-bench-\(getpid())-scaling-\(workers)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let server = try BatonServer(products: products, port: try LoadTarget.freeLoopbackPort(), workers: workers, scratch: scratch)
        defer { _ = server.stop() }
        var times: [Double] = []
        for _ in 0..<reloads {
            let started = ContinuousClock.now
            guard server.reload() else { return nil }
            times.append((ContinuousClock.now - started).milliseconds)
            try server.settle()
        }
        return ScenarioResult.Percentiles(times)
    }

    static func machine() -> String {
        let cpu =
            ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        var system = utsname()
        uname(&system)
        let release = withUnsafeBytes(of: &system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores (\(cpu)), Linux \(release)"
    }
}
