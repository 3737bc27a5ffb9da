/// What `batonctl status` and systemd's `STATUS=` line say, made from the state
/// machine, the worker table and the reload history. Pure.
struct StatusProjection {
    var machine: SupervisorStateMachine
    var workers: WorkerTable
    /// Most recent last.
    var reloads: [StatusReport.ReloadRecord]

    /// The phase as the control protocol names it.
    var phase: StatusReport.Phase {
        switch machine.phase {
        case .idle, .starting: .starting
        case .running: .running
        case .loadingConfiguration, .reloading: .reloading
        case .stopping, .stopped: .stopping
        }
    }

    /// One line for `STATUS=`: what serves, what drains, how the last reload went.
    var line: String {
        var parts: [String] = []
        if let serving = machine.serving {
            let ready = serving.workers.values.filter { $0.state == .ready }.count
            parts.append("generation \(serving.number): \(ready)/\(serving.configuration.workers.count) ready")
        }
        let draining = machine.generations.reduce(0) { count, generation in
            count + generation.retired.count + (generation.role == .leaving || generation.role == .draining ? generation.workers.count : 0)
        }
        if draining > 0 { parts.append("\(draining) draining") }
        if let last = reloads.last, last.finished != nil {
            parts.append("last reload \(last.result)")
        }
        return parts.joined(separator: "; ")
    }

    /// The status report, with `now` on the monotonic clock for uptimes and the
    /// listeners' sockets as the socket table reports them.
    func report(pid: Int32, configurationName: String, listeners: [StatusReport.ListenerStatus], now: Double,
                scaledTo: Int?, upgrades: Int, upgradeError: String?,
                reloadStatistics: StatusReport.ReloadStatistics? = nil, canaryHoldEnds: Double? = nil) -> StatusReport {
        let generations = machine.generations.map { generation in
            StatusReport.GenerationStatus(
                number: generation.number, role: .init(generation.role),
                workers: (Array(generation.workers.values) + generation.retired.values).sorted { $0.id < $1.id }.map { worker in
                    let entry = workers[worker.id]
                    return StatusReport.WorkerStatus(
                        slot: worker.id.slot, restarts: worker.id.start, pid: entry?.pid,
                        state: worker.announcedStopping && worker.state == .draining ? .stopping : .init(worker.state),
                        status: worker.status, uptime: entry.map { now - $0.started })
                },
                restartingSlots: generation.restarting.sorted(),
                crashLoopingSlots: (0..<generation.configuration.workers.count).filter { generation.isCrashLooping(slot: $0) })
        }
        let configuration = machine.generations.last?.configuration
        var report = StatusReport(
            pid: pid, phase: phase, configuration: configurationName,
            command: configuration?.workers.command ?? [], generations: generations, listeners: listeners,
            reloads: reloads, pendingReloads: machine.pendingReloads.count,
            scaledTo: scaledTo, upgrades: upgrades, upgradeError: upgradeError, reloadStatistics: reloadStatistics)
        report.rollout = machine.rollout.map {
            var rollout = StatusReport.RolloutStatus(from: $0.from, to: $0.to, batch: $0.batch, replacedSlots: $0.replaced,
                                                     batchSlots: $0.batchSlots, rollingBack: $0.failure)
            if let canary = $0.canary {
                rollout.canary = .init(workers: canary.workers, weight: canary.weight, slots: $0.canarySlots,
                                       holdLeft: canary.hold == nil || $0.canarySlots.isEmpty ? nil : canaryHoldEnds.map { max(0, $0 - now) },
                                       after: canary.after?.rawValue)
            }
            return rollout
        }
        return report
    }
}
