import BatonLoad
import Foundation

/// What one scenario measured.
struct ScenarioResult: Codable {
    var scenario: Scenario
    var summary: String
    var seconds: Double
    var reloads: Int
    var failedReloads: Int
    var requests: Int
    var failedRequests: Int
    var failures: [FailureKind: Int]
    var failureSamples: [String]
    var failuresPer1000Reloads: Double?
    var requestsPerSecond: Double
    /// Latency in microseconds of requests completed inside and outside reload windows
    /// (from a reload's start until its new generation serves).
    var latency: LoadReport.LatencySummary
    var latencyInsideReloads: LoadReport.LatencySummary
    var latencyOutsideReloads: LoadReport.LatencySummary
    /// p99 inside reload windows divided by p99 outside.
    var p99Ratio: Double?
    /// Milliseconds from a reload's start until its new generation serves.
    var reloadMilliseconds: Percentiles?
    var supervisorCPUSeconds: Double?
    var supervisorCPUMillisecondsPerReload: Double?
    var supervisorPeakRSSKiB: Int?
    var idle: IdleFigures?
    var supervisorExitStatus: Int32?
    /// For the chart: 100 ms slices, and the reload windows in seconds since the start.
    var timeline: [LoadReport.Slice]
    var reloadWindows: [[Double]]

    struct Percentiles: Codable {
        var p50: Double
        var p99: Double
        var max: Double

        init?(_ values: [Double]) {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            func at(_ fraction: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))] }
            p50 = at(0.5)
            p99 = at(0.99)
            max = sorted.last!
        }
    }

    struct IdleFigures: Codable {
        var seconds: Double
        var cpuSeconds: Double
        var contextSwitches: Int
    }

    init(
        scenario: Scenario, plan: BenchPlan, report: LoadReport, reloadDurations: [Duration], failedReloads: Int,
        supervisor: (before: ProcessUsage, after: ProcessUsage)?, idle: (settled: ProcessUsage, after: ProcessUsage)?,
        exitStatus: Int32?
    ) {
        self.scenario = scenario
        summary = scenario.summary
        seconds = report.elapsed
        reloads = reloadDurations.count
        self.failedReloads = failedReloads
        requests = report.requests
        failedRequests = report.totalFailures
        failures = report.failures
        failureSamples = report.failureSamples
        failuresPer1000Reloads = reloads > 0 ? Double(failedRequests) * 1000 / Double(reloads) : nil
        requestsPerSecond = report.throughput
        var windows: [ClosedRange<Double>] = []
        var start: Double?
        for event in report.events {
            if event.name == "reload-start" { start = event.at }
            if event.name == "reload-end", let begun = start {
                windows.append(begun...event.at)
                start = nil
            }
        }
        latency = report.latency
        latencyInsideReloads = report.latency(inside: windows)
        latencyOutsideReloads = report.latency(outside: windows)
        p99Ratio =
            latencyInsideReloads.count > 0 && latencyOutsideReloads.p99 > 0
            ? Double(latencyInsideReloads.p99) / Double(latencyOutsideReloads.p99) : nil
        reloadMilliseconds = Percentiles(reloadDurations.map(\.milliseconds))
        if let (before, after) = supervisor {
            supervisorCPUSeconds = after.cpuSeconds - before.cpuSeconds
            supervisorCPUMillisecondsPerReload = reloads > 0 ? (after.cpuSeconds - before.cpuSeconds) * 1000 / Double(reloads) : nil
            supervisorPeakRSSKiB = max(after.peakResidentKiB, idle?.after.peakResidentKiB ?? 0)
        }
        if let (settled, after) = idle {
            self.idle = IdleFigures(
                seconds: plan.idle, cpuSeconds: after.cpuSeconds - settled.cpuSeconds,
                contextSwitches: after.contextSwitches(since: settled))
        }
        supervisorExitStatus = exitStatus
        timeline = report.timeline
        reloadWindows = windows.map { [$0.lowerBound, $0.upperBound] }
    }
}
