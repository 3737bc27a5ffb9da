/// A rolling reload (Docs/rollouts.md): the new generation takes over the old one's
/// slots `batch` at a time, and once a new worker fails, the replaced slots go back the
/// same way. A canary (`+Canary`) is a rollout whose first batch holds before the rest.
extension SupervisorStateMachine {
    /// Why a rolling reload cannot go from `old` to `new`, if it cannot: each slot's new
    /// worker takes the old one's place, so both need the same slots and listeners.
    static func rollingObstacle(from old: Configuration, to new: Configuration) -> String? {
        if old.workers.count != new.workers.count {
            return "the worker count changes from \(old.workers.count) to \(new.workers.count)"
        }
        if old.listeners.map({ [$0.name, "\($0.address)", $0.reusePort.rawValue] })
            != new.listeners.map({ [$0.name, "\($0.address)", $0.reusePort.rawValue] })
        {
            return "the listeners change"
        }
        return nil
    }

    mutating func startRollout(
        _ configuration: Configuration, replacing from: Int, ids: [ReloadRequestID],
        canary: Canary? = nil, into actions: inout [SupervisorAction]
    ) {
        let number = table[table.add(configuration)].number
        let count = configuration.workers.count
        let batch = min(configuration.workers.batch, count)
        rollout = Rollout(from: from, to: number, batch: batch, slots: count, canary: canary)
        if let canary {
            actions.append(.reportReload(ids, .startingCanary(generation: number, workers: canary.workers, weight: canary.weight)))
            startBatch(Array(0..<canary.workers), into: &actions)
        } else {
            actions.append(.reportReload(ids, .startingRollout(generation: number, workers: count, batch: batch)))
            advanceRollout(into: &actions)
        }
    }

    /// Ends the rollout once every slot is replaced (or back), else starts the next
    /// batch once no replaced worker is left alive: at most `count + batch` workers.
    mutating func advanceRollout(into actions: inout [SupervisorAction]) {
        guard let rollout, rollout.batchSlots.isEmpty,
            let from = table.index(of: rollout.from), let to = table.index(of: rollout.to)
        else { return }
        if rollout.failure == nil && rollout.replaced.count == rollout.slots {
            finishRollout(rollout, into: &actions)
            return
        }
        if rollout.failure != nil && rollout.replaced.isEmpty {
            finishRollback(rollout, into: &actions)
            return
        }
        guard table[from].retired.isEmpty, table[to].retired.isEmpty else { return }
        let slots =
            rollout.failure == nil
            ? Array((0..<rollout.slots).filter { !rollout.replaced.contains($0) }.prefix(rollout.batch))
            : Array(rollout.replaced.reversed().prefix(rollout.batch))
        startBatch(slots, into: &actions)
        if rollout.failure == nil, case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .startingBatch(generation: rollout.to, slots: slots)))
        }
    }

    /// Starts the workers of a batch: in `to` going forward, in `from` going back.
    mutating func startBatch(_ slots: [Int], into actions: inout [SupervisorAction]) {
        guard var rollout, let from = table.index(of: rollout.from), let starting = table.index(of: rollout.starting) else { return }
        rollout.batchSlots = slots
        self.rollout = rollout
        for slot in slots {
            // The old generation's slot waiting for its restart is replaced instead.
            actions += table.cancelRestart(slot: slot, at: from)
            if starting == from {
                actions += table.restartWorker(slot: slot, at: from)
            } else {
                actions += table.startWorker(WorkerID(generation: rollout.to, slot: slot), at: starting)
            }
        }
    }

    /// A worker of the batch under way is ready: once all are, the batch takes over its
    /// slots and the workers it replaces leave.
    mutating func batchWorkerReady(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard var rollout, rollout.starting == id.generation, rollout.batchSlots.contains(id.slot),
            let starting = table.index(of: rollout.starting), let yielding = table.index(of: rollout.yielding),
            rollout.batchSlots.allSatisfy({ table[starting].workers[$0]?.state == .ready })
        else { return }
        let slots = rollout.batchSlots
        rollout.batchSlots = []
        if rollout.canary != nil, rollout.failure == nil {
            canaryReady(&rollout, slots: slots, into: &actions)
            return
        }
        if rollout.failure == nil {
            rollout.replaced += slots
        } else {
            rollout.replaced.removeAll { slots.contains($0) }
        }
        self.rollout = rollout
        handOver(slots, from: yielding, into: &actions)
    }

    /// The slots' sockets of the starting side take their place in the rotation, the
    /// workers of generation index `yielding` there leave, and the rollout goes on.
    mutating func handOver(_ slots: [Int], from yielding: Int, into actions: inout [SupervisorAction]) {
        steer(into: &actions)
        for slot in slots {
            depart(yielding, slot: slot, into: &actions)
        }
        if let rollout, rollout.failure == nil, case .reloading(let ids) = phase {
            actions.append(
                .reportReload(
                    ids,
                    .replacedSlots(
                        generation: rollout.to, slots: slots,
                        replaced: rollout.replaced.count, of: rollout.slots)))
        }
        advanceRollout(into: &actions)
    }

    /// An old-configuration worker started to take a slot back exited before it was
    /// ready. The rollback does not wait for it: its version may no longer start at all
    /// (a deleted release), and a rollback that never ends would keep every later reload,
    /// the one that fixes things too, waiting. The slot goes back to the old generation as
    /// it is, a crashed slot that restarts after its backoff (and out of rotation until a
    /// worker there is ready), and the new generation's worker there leaves.
    mutating func takeBackUnready(slot: Int, into actions: inout [SupervisorAction]) {
        guard var rollout, rollout.failure != nil, rollout.batchSlots.contains(slot),
            let to = table.index(of: rollout.to)
        else { return }
        rollout.batchSlots.removeAll { $0 == slot }
        rollout.replaced.removeAll { $0 == slot }
        self.rollout = rollout
        steer(into: &actions)
        depart(to, slot: slot, into: &actions)
        advanceRollout(into: &actions)
    }

    /// A worker of the new generation exited while the rollout went on: a replaced or
    /// canary slot's worker leaves the rotation (what its sockets hold moves on), and the
    /// rollout turns back.
    mutating func rolloutWorkerExited(_ worker: Worker, _ exit: WorkerExit, lastWords: [String], into actions: inout [SupervisorAction]) {
        guard let rollout else { return }
        let id = worker.id
        actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
        let inRotation = rollout.replaced.contains(id.slot) || rollout.canarySlots.contains(id.slot)
        if worker.state == .ready, inRotation, steer(into: &actions) {
            actions.append(.evacuate(generation: id.generation, slot: id.slot))
        }
        let when =
            rollout.canarySlots.contains(id.slot)
            ? "while the canary held"
            : worker.state == .ready && inRotation ? "after it took over" : "before it was ready"
        rolloutFailed("slot \(id.slot): worker \(id) \(exit) \(when)\(WorkerExit.lastOutput(lastWords))", into: &actions)
        removeFinishedGenerations(into: &actions)
        advanceRollout(into: &actions)
        startPendingReload(into: &actions)
    }

    /// A new worker failed: the reload is over, and the rollout turns back. The batch
    /// under way stops (its workers were never in rotation).
    mutating func rolloutFailed(_ reason: String, into actions: inout [SupervisorAction]) {
        guard var rollout, rollout.failure == nil, let to = table.index(of: rollout.to) else { return }
        let settings = table[to].configuration.workers
        let canarySlots = rollout.canarySlots
        actions += endCanary(&rollout)
        for slot in rollout.batchSlots {
            guard let worker = table.retire(slot: slot, at: to) else { continue }
            if worker.state == .starting {
                actions.append(.cancelTimer(.readyTimeout(worker.id)))
            }
            if worker.state != .killed {
                table[to].retired[worker.id]?.state = .draining
                actions.append(.signal(worker.id, settings.drainSignal))
            }
            actions.append(.startTimer(.retiredDeadline(worker.id), after: settings.drainTimeout))
        }
        rollout.batchSlots = []
        rollout.failure = reason
        self.rollout = rollout
        if !canarySlots.isEmpty {
            // The canary leaves the rotation; its workers accept what their sockets hold, then drain.
            steer(into: &actions)
            for slot in canarySlots {
                depart(to, slot: slot, into: &actions)
            }
        }
        if case .reloading(let ids) = phase {
            let back =
                rollout.replaced.isEmpty
                ? ""
                : "; slot\(rollout.replaced.count == 1 ? "" : "s") \(ReloadProgress.list(rollout.replaced)) \(rollout.replaced.count == 1 ? "goes" : "go") back to generation \(rollout.from)"
            actions.append(.reportReload(ids, .rolledBack(generation: rollout.to, reason: reason + back)))
        }
        phase = .running
        advanceRollout(into: &actions)
    }

    /// Every slot is the new generation's: it serves, the old one is done once its last
    /// departing workers have exited.
    private mutating func finishRollout(_ rollout: Rollout, into actions: inout [SupervisorAction]) {
        guard let from = table.index(of: rollout.from), let to = table.index(of: rollout.to) else { return }
        self.rollout = nil
        table[to].role = .serving
        table[from].role = .draining
        steer(into: &actions)
        if case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .tookOver(generation: rollout.to, replaced: rollout.from)))
        }
        phase = .running
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }

    /// Every replaced slot is back: the new generation is done once its last workers
    /// have exited.
    private mutating func finishRollback(_ rollout: Rollout, into actions: inout [SupervisorAction]) {
        guard table.index(of: rollout.from) != nil, let to = table.index(of: rollout.to) else { return }
        self.rollout = nil
        table[to].role = .rollingBack
        steer(into: &actions)
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }
}
