import Foundation

/// Every scenario of one run, and the figures Baton is judged by.
struct BenchReport: Codable {
    var plan: BenchPlan
    var machine: String
    var scenarios: [ScenarioResult]
    /// Milliseconds from starting the plan's number of `baton-demo` processes at once
    /// until each has sent `READY=1`, without Baton and without load.
    var workerStartupMilliseconds: ScenarioResult.Percentiles?
    var scaling: [ScalingPoint]

    struct ScalingPoint: Codable {
        var workers: Int
        /// Milliseconds from the reload request until every new worker is ready.
        var reloadMilliseconds: ScenarioResult.Percentiles?
    }

    struct Figure {
        var name: String
        var value: String
        var target: String
        var met: Bool?
    }

    func result(_ scenario: Scenario) -> ScenarioResult? {
        scenarios.first { $0.scenario == scenario }
    }

    /// Mean over every run of `scenario`: running the scenarios in a mirrored order
    /// (`direct control … control direct`) cancels a machine that drifts during the run.
    func requestsPerSecond(_ scenario: Scenario) -> Double? {
        let runs = scenarios.filter { $0.scenario == scenario }
        return runs.isEmpty ? nil : runs.map(\.requestsPerSecond).reduce(0, +) / Double(runs.count)
    }

    /// Baton's figures against its targets; a figure whose inputs were not run is absent.
    var figures: [Figure] {
        var figures: [Figure] = []
        if let baton = result(.baton), let perThousand = baton.failuresPer1000Reloads {
            figures.append(
                Figure(
                    name: "failed requests per 1000 reloads", value: String(format: "%.1f", perThousand),
                    target: "0", met: baton.failedRequests == 0))
        }
        if let baton = result(.baton)?.p99Ratio, let control = result(.control)?.p99Ratio {
            figures.append(
                Figure(
                    name: "p99 inside / outside reload windows, Baton vs the do-nothing control",
                    value: String(format: "%.2f vs %.2f (%+.0f%%)", baton, control, (baton / control - 1) * 100),
                    target: "within 10% of the control", met: baton <= control * 1.1))
        }
        if let reload = scaling.first(where: { $0.workers == plan.workers })?.reloadMilliseconds,
            let startup = workerStartupMilliseconds
        {
            let overhead = reload.p50 - startup.p50
            figures.append(
                Figure(
                    name: "reload until the new generation serves, minus the workers' own start-up (p50, without load)",
                    value: String(format: "%.1f ms (%.1f - %.1f)", overhead, reload.p50, startup.p50),
                    target: "< 10 ms", met: overhead < 10))
        }
        if let direct = requestsPerSecond(.direct) {
            for (scenario, what) in [(Scenario.baton, "reloading"), (.control, "not reloading")] {
                guard let measured = requestsPerSecond(scenario) else { continue }
                let ratio = measured / direct
                figures.append(
                    Figure(
                        name: "throughput under Baton (\(what)) / the server bound directly",
                        value: String(format: "%.3f (%.0f / %.0f requests/s)", ratio, measured, direct),
                        target: ">= 0.98", met: ratio >= 0.98))
            }
        }
        if let baton = result(.baton), let rss = baton.supervisorPeakRSSKiB, let cpu = baton.supervisorCPUMillisecondsPerReload {
            figures.append(
                Figure(
                    name: "supervisor peak RSS", value: String(format: "%.1f MB", Double(rss) / 1024),
                    target: "< 20 MB", met: rss < 20 * 1024))
            figures.append(
                Figure(
                    name: "supervisor CPU time per reload", value: String(format: "%.2f ms", cpu),
                    target: "", met: nil))
        }
        if let healthy = requestsPerSecond(.healthy) {
            for scenario in [Scenario.deadSlot, .deadSlotUnsteered] {
                guard let dead = result(scenario), let measured = requestsPerSecond(scenario) else { continue }
                let steered = scenario == .deadSlot
                figures.append(
                    Figure(
                        name: "one slot of \(plan.workers) dead (\(steered ? "steering" : "no steering")): failed requests (timed out), throughput / healthy",
                        value: String(
                            format: "%d (%d), %.2f (%.0f / %.0f requests/s)", dead.failedRequests, dead.failures[.timedOut] ?? 0,
                            measured / healthy, measured, healthy),
                        target: steered ? "0, >= 0.9" : "", met: steered ? dead.failedRequests == 0 && measured / healthy >= 0.9 : nil))
            }
        }
        for scenario in [Scenario.rude, .rudeUnsteered] {
            guard let rude = result(scenario) else { continue }
            let steered = scenario == .rude
            figures.append(
                Figure(
                    name:
                        "a server that drops what it accepted when told to drain (\(steered ? "steering" : "no steering")): failed requests over \(rude.reloads) reloads",
                    value: "\(rude.failedRequests)", target: steered ? "0" : "", met: steered ? rude.failedRequests == 0 : nil))
        }
        if let idle = result(.baton)?.idle {
            figures.append(
                Figure(
                    name: String(format: "supervisor while idle for %.0f s: CPU time, context switches", idle.seconds),
                    value: String(format: "%.2f s, %d", idle.cpuSeconds, idle.contextSwitches),
                    target: "0, 0", met: idle.cpuSeconds == 0 && idle.contextSwitches == 0))
        }
        return figures
    }

    var markdown: String {
        func ms(_ microseconds: UInt64) -> String { String(format: "%.2f", Double(microseconds) / 1000) }
        func cell(_ result: ScenarioResult, _ value: (ScenarioResult) -> String?) -> String { value(result) ?? "–" }
        let load = plan.rate.map { String(format: "open loop at %.0f requests/s", $0) } ?? "closed loop"
        let controlCPU =
            plan.controlCPUMilliseconds > 0
            ? String(format: "The control's reloads each spend %.2f ms of CPU time in baton-bench. ", plan.controlCPUMilliseconds) : ""
        var text = """
            \(plan.workers) workers of baton-demo; \(plan.clients) clients, \(plan.mode.rawValue), \(load); \
            one reload every \(plan.reloadIntervalMilliseconds) ms for \(String(format: "%.0f", plan.duration)) s per scenario. \
            \(controlCPU)Machine: \(machine).


            """
        let rows: [(String, (ScenarioResult) -> String?)] = [
            ("reloads (failed)", { $0.scenario.reloads ? "\($0.reloads) (\($0.failedReloads))" : nil }),
            ("requests", { "\($0.requests)" }),
            (
                "**failed requests**",
                { result in
                    result.failures.isEmpty
                        ? "**0**"
                        : "**\(result.failedRequests)** (" + result.failures.map { "\($0.key.rawValue) \($0.value)" }.sorted().joined(separator: ", ") + ")"
                }
            ),
            ("failed requests per 1000 reloads", { $0.failuresPer1000Reloads.map { String(format: "%.1f", $0) } }),
            ("requests/s", { String(format: "%.0f", $0.requestsPerSecond) }),
            ("latency p50 / p99 outside reloads (ms)", { "\(ms($0.latencyOutsideReloads.p50)) / \(ms($0.latencyOutsideReloads.p99))" }),
            (
                "latency p50 / p99 inside reloads (ms)",
                { $0.latencyInsideReloads.count > 0 ? "\(ms($0.latencyInsideReloads.p50)) / \(ms($0.latencyInsideReloads.p99))" : nil }
            ),
            ("p99 inside / outside", { $0.p99Ratio.map { String(format: "%.2f", $0) } }),
            ("reload until new generation serves, p50 / p99 (ms)", { $0.reloadMilliseconds.map { String(format: "%.1f / %.1f", $0.p50, $0.p99) } }),
            ("supervisor CPU per reload (ms)", { $0.supervisorCPUMillisecondsPerReload.map { String(format: "%.2f", $0) } }),
            ("supervisor peak RSS (MB)", { $0.supervisorPeakRSSKiB.map { String(format: "%.1f", Double($0) / 1024) } }),
        ]
        text += "| | " + scenarios.map { "**\($0.scenario.rawValue)**" }.joined(separator: " | ") + " |\n"
        text += "|---|" + scenarios.map { _ in "---|" }.joined() + "\n"
        for (name, value) in rows {
            text += "| \(name) | " + scenarios.map { cell($0, value) }.joined(separator: " | ") + " |\n"
        }
        text += "\n" + scenarios.map { "- **\($0.scenario.rawValue)**: \($0.summary)" }.joined(separator: "\n") + "\n"

        if !figures.isEmpty {
            text += "\n| Baton's figure | measured | target | |\n|---|---|---|---|\n"
            for figure in figures {
                let verdict = figure.met.map { $0 ? "met" : "**not met**" } ?? ""
                text += "| \(figure.name) | \(figure.value) | \(figure.target) | \(verdict) |\n"
            }
        }
        if !scaling.isEmpty {
            text += "\n| workers | reload until every new worker is ready, p50 / max (ms) |\n|---|---|\n"
            for point in scaling {
                text += "| \(point.workers) | " + (point.reloadMilliseconds.map { String(format: "%.1f / %.1f", $0.p50, $0.max) } ?? "failed") + " |\n"
            }
        }
        return text
    }
}
