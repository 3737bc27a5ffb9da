import ArgumentParser
import BatonLoad
import Foundation

// baton-bench: reloads under load, measured. See Docs/benchmarks.md.
BenchCommand.main()

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-bench",
        abstract: "Run baton-demo under baton, reload it on a schedule under HTTP load, and report what clients saw.",
        discussion: "Figures: failed requests, requests/s, latency p50/p99 inside and outside reload windows, the supervisor's CPU time, peak RSS and idle CPU.")

    @Option(help: "Worker slots.")
    var workers = 2

    @Option(help: "How long the load runs, in seconds.")
    var duration: Double = 60

    @Option(help: "Milliseconds between the starts of two reloads.")
    var reloadEvery = 200

    @Option(help: "new-connection or keep-alive.")
    var mode: ConnectionMode = .newConnection

    @Option(help: "Concurrent clients.")
    var clients = 16

    @Option(help: "Seconds of idleness after the load, over which the supervisor's CPU time is measured.")
    var idle: Double = 5

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Option(help: "Directory holding baton and baton-demo (default: next to baton-bench).")
    var products: String?

    func run() throws {
        let directory = products ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().path
        var plan = ReloadBenchmark.Plan()
        plan.workers = workers
        plan.duration = .milliseconds(Int64(duration * 1000))
        plan.reloadInterval = .milliseconds(reloadEvery)
        plan.mode = mode
        plan.clients = clients
        plan.idle = .milliseconds(Int64(idle * 1000))
        let result = try ReloadBenchmark(plan: plan, products: directory).run()
        print(result.markdown)
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        if result.failedRequests > 0 || result.failedReloads > 0 {
            throw ExitCode(1)
        }
    }
}

extension ConnectionMode: ExpressibleByArgument {}
