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
            // Why a reload failed, so that `systemctl status` says it; bounded, as
            // the worker's last output it may quote is.
            let why = last.reason.map { $0.count > 300 ? $0.prefix(300) + "…" : $0 }
            parts.append("last reload \(last.result)" + (why.map { ": \($0)" } ?? ""))
        }
        return parts.joined(separator: "; ")
    }

    /// The status report, with `now` on the monotonic clock for uptimes and the
    /// listeners' sockets as the socket table reports them.
    func report(
        pid: Int32, configurationName: String, listeners: [StatusReport.ListenerStatus], now: Double,
        scaledTo: Int?, upgrades: Int, upgradeError: String?,
        reloadStatistics: StatusReport.ReloadStatistics? = nil,
        restartDue: (_ generation: Int, _ slot: Int) -> Double? = { _, _ in nil }
    ) -> StatusReport {
        let generations = machine.generations.map { generation in
            StatusReport.GenerationStatus(
                number: generation.number,
                role: machine.rollout?.to == generation.number && machine.rollout?.canary?.slots.isEmpty == false ? .canary : .init(generation.role),
                workers: (Array(generation.workers.values) + generation.retired.values).sorted { $0.id < $1.id }.map { worker in
                    let entry = workers[worker.id]
                    return StatusReport.WorkerStatus(
                        slot: worker.id.slot, restarts: worker.id.start, pid: entry?.pid,
                        state: worker.announcedStopping && worker.state == .draining ? .stopping : .init(worker.state),
                        status: worker.status, uptime: entry.map { now - $0.started })
                },
                restartingSlots: generation.restarting.sorted(),
                crashLoopingSlots: (0..<generation.configuration.workers.count).filter { generation.isCrashLooping(slot: $0) },
                slotRestarts: generation.restarting.sorted().map { slot in
                    StatusReport.SlotRestart(
                        slot: slot, restarts: generation.starts[slot, default: 0], crashes: generation.crashes[slot, default: 0],
                        lastExit: generation.lastExits[slot],
                        nextStartIn: restartDue(generation.number, slot).map { max(0, $0 - now) })
                })
        }
        let configuration = machine.generations.last?.configuration
        var report = StatusReport(
            pid: pid, phase: phase, configuration: configurationName,
            command: configuration?.workers.command ?? [], generations: generations, listeners: listeners,
            reloads: reloads, pendingReloads: machine.pendingReloads.count,
            scaledTo: scaledTo, upgrades: upgrades, upgradeError: upgradeError, reloadStatistics: reloadStatistics)
        report.rollout = machine.rollout.map {
            var rollout = StatusReport.RolloutStatus(
                from: $0.from, to: $0.to, batch: $0.batch, replacedSlots: $0.replaced,
                batchSlots: $0.batchSlots, rollingBack: $0.failure)
            if let canary = $0.canary {
                rollout.canary = .init(
                    workers: canary.asked.workers, weight: canary.asked.weight, slots: canary.slots,
                    holdLeft: canary.slots.isEmpty ? nil : canary.holdEnds.map { max(0, $0 - now) },
                    after: canary.asked.after?.rawValue)
                if !canary.slots.isEmpty, let then = canary.steeredThen {
                    rollout.canary?.connections = Self.connections(since: then, from: $0.from, to: $0.to, now: listeners)
                }
            }
            return rollout
        }
        return report
    }
}

extension StatusProjection {
    /// The steering counters of `listeners`' sockets summed by generation, every
    /// listener together; nil when no socket is steered (no counters).
    static func steered(_ listeners: [StatusReport.ListenerStatus]) -> [Int: UInt64]? {
        var sums: [Int: UInt64] = [:]
        var any = false
        for socket in listeners.flatMap(\.sockets) {
            guard let generation = socket.generation, let steered = socket.steered else { continue }
            sums[generation, default: 0] &+= steered
            any = true
        }
        return any ? sums : nil
    }

    /// Each generation's connections since the counters were `then`, old generation first.
    static func connections(
        since then: [Int: UInt64], from: Int, to: Int, now listeners: [StatusReport.ListenerStatus]
    ) -> [StatusReport.RolloutStatus.GenerationConnections]? {
        guard let now = steered(listeners) else { return nil }
        func since(_ generation: Int) -> UInt64 {
            let count = now[generation, default: 0]
            let before = then[generation, default: 0]
            // A counter that went back (a socket closed and opened again) counts from zero.
            return count >= before ? count - before : count
        }
        return StatusReport.RolloutStatus.GenerationConnections.shares([(from, since(from)), (to, since(to))])
    }
}
