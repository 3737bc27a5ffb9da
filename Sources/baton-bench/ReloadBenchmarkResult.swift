import BatonLoad
import Foundation

/// The figures of one benchmark run, as JSON and as a Markdown table.
struct ReloadBenchmarkResult: Codable {
    var workers: Int
    var mode: ConnectionMode
    var clients: Int
    var seconds: Double
    var reloadIntervalMilliseconds: Int
    var reloads: Int
    var failedReloads: Int
    var requests: Int
    var failedRequests: Int
    var failures: [FailureKind: Int]
    var failureSamples: [String]
    var requestsPerSecond: Double
    /// Latency in microseconds of requests completed inside and outside reload windows
    /// (from the reload request until the new generation took over).
    var latencyInsideReloads: LoadReport.LatencySummary
    var latencyOutsideReloads: LoadReport.LatencySummary
    /// Milliseconds from the reload request until the new generation serves.
    var reloadDurationP50: Double
    var reloadDurationP99: Double
    var supervisorCPUSeconds: Double
    var supervisorCPUMillisecondsPerReload: Double
    var supervisorPeakRSSKiB: Int
    var supervisorIdleCPUSeconds: Double
    var supervisorIdleContextSwitches: Int
    var idleSeconds: Double
    var supervisorExitStatus: Int32

    init(plan: ReloadBenchmark.Plan, report: LoadReport, reloadDurations: [Duration], failedReloads: Int,
         before: ProcessUsage, loaded: ProcessUsage, settled: ProcessUsage, idle: ProcessUsage, exitStatus: Int32) {
        workers = plan.workers
        mode = plan.mode
        clients = plan.clients
        seconds = report.elapsed
        reloadIntervalMilliseconds = Int(plan.reloadInterval.components.seconds * 1000
            + plan.reloadInterval.components.attoseconds / 1_000_000_000_000_000)
        reloads = reloadDurations.count
        self.failedReloads = failedReloads
        requests = report.requests
        failedRequests = report.totalFailures
        failures = report.failures
        failureSamples = report.failureSamples
        requestsPerSecond = report.throughput
        var windows: [ClosedRange<Double>] = []
        var start: Double?
        for event in report.events {
            if event.name == "reload-start" { start = event.at }
            if event.name == "reload-end", let begun = start { windows.append(begun...event.at); start = nil }
        }
        latencyInsideReloads = report.latency(inside: windows)
        latencyOutsideReloads = report.latency(outside: windows)
        let milliseconds = reloadDurations.map { Double($0.components.seconds) * 1000 + Double($0.components.attoseconds) / 1e15 }.sorted()
        func percentile(_ p: Double) -> Double {
            milliseconds.isEmpty ? 0 : milliseconds[min(milliseconds.count - 1, Int(Double(milliseconds.count) * p))]
        }
        reloadDurationP50 = percentile(0.5)
        reloadDurationP99 = percentile(0.99)
        supervisorCPUSeconds = loaded.cpuSeconds - before.cpuSeconds
        supervisorCPUMillisecondsPerReload = reloads > 0 ? supervisorCPUSeconds * 1000 / Double(reloads) : 0
        supervisorPeakRSSKiB = idle.peakResidentKiB
        supervisorIdleCPUSeconds = idle.cpuSeconds - settled.cpuSeconds
        supervisorIdleContextSwitches = idle.contextSwitches(since: settled)
        idleSeconds = Double(plan.idle.components.seconds)
        supervisorExitStatus = exitStatus
    }

    var markdown: String {
        func ms(_ microseconds: UInt64) -> String { String(format: "%.2f ms", Double(microseconds) / 1000) }
        let failureText = failures.isEmpty ? "0" : "\(failedRequests) (" + failures.map { "\($0.key.rawValue): \($0.value)" }.sorted().joined(separator: ", ") + ")"
        return """
            | baton-demo, \(workers) workers, \(mode.rawValue), \(clients) clients | |
            |---|---|
            | duration | \(String(format: "%.1f s", seconds)) |
            | reloads (one every \(reloadIntervalMilliseconds) ms) | \(reloads), \(failedReloads) failed |
            | requests | \(requests) |
            | failed requests | \(failureText) |
            | requests/s | \(String(format: "%.0f", requestsPerSecond)) |
            | latency p50 / p99 outside reloads | \(ms(latencyOutsideReloads.p50)) / \(ms(latencyOutsideReloads.p99)) (\(latencyOutsideReloads.count) requests) |
            | latency p50 / p99 inside reloads | \(ms(latencyInsideReloads.p50)) / \(ms(latencyInsideReloads.p99)) (\(latencyInsideReloads.count) requests) |
            | reload request until new generation serves, p50 / p99 | \(String(format: "%.1f / %.1f ms", reloadDurationP50, reloadDurationP99)) |
            | supervisor CPU time under load | \(String(format: "%.2f s (%.2f ms per reload)", supervisorCPUSeconds, supervisorCPUMillisecondsPerReload)) |
            | supervisor peak RSS | \(String(format: "%.1f MB", Double(supervisorPeakRSSKiB) / 1024)) |
            | supervisor while idle for \(String(format: "%.0f s", idleSeconds)): CPU time, context switches | \(String(format: "%.2f s", supervisorIdleCPUSeconds)), \(supervisorIdleContextSwitches) |
            | supervisor exit status after SIGTERM | \(supervisorExitStatus) |
            """
    }
}
