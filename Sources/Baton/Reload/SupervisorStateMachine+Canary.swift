/// A canary reload: the rollout's first batch (the canary's workers) takes a share of
/// new connections beside every old worker and holds, with its health check running,
/// until it is promoted (the rest follows by the configured strategy) or rolled back.
extension SupervisorStateMachine {
    /// Why a canary of `workers` workers cannot be asked for now, if it cannot: it
    /// starts only while one generation serves alone, and leaves at least one old slot.
    func canaryRefusal(workers: Int) -> String? {
        guard phase == .running, table.count == 1, let serving else {
            return "a canary starts only while one generation serves alone; ask again once the reload under way is over"
        }
        let count = serving.configuration.workers.count
        guard workers >= 1, workers < count else {
            return "a canary needs 1 to \(count - 1) workers (the service has \(count) slots), got \(workers)"
        }
        return nil
    }

    /// Why `batonctl promote` (or `rollback`, when `promoting` is false) cannot act now,
    /// if it cannot: a canary must hold, and for a promotion its workers be ready.
    func canaryCommandRefusal(promoting: Bool) -> String? {
        guard let rollout, rollout.canary != nil else {
            return "no canary holds"
        }
        guard !promoting || !rollout.canarySlots.isEmpty else {
            return "the canary of generation \(rollout.to) is not ready yet"
        }
        return nil
    }

    /// Why a canary of `canary.workers` workers cannot go from `old` to `new`, if it cannot.
    static func canaryObstacle(from old: Configuration, to new: Configuration, _ canary: Canary) -> String? {
        if let obstacle = flowsObstacle(new) ?? rollingObstacle(from: old, to: new) { return obstacle }
        if canary.workers >= new.workers.count {
            return "a canary of \(canary.workers) worker(s) needs more than \(canary.workers) slots, the service has \(new.workers.count)"
        }
        return nil
    }

    mutating func canaryConfigurationLoaded(_ configuration: Configuration, _ canary: Canary, into actions: inout [SupervisorAction]) {
        guard case .loadingConfiguration(let ids) = phase, let serving else {
            actions.append(.retainSockets(for: table.socketUsers))
            return
        }
        if let obstacle = Self.canaryObstacle(from: serving.configuration, to: configuration, canary) {
            phase = .running
            actions.append(.retainSockets(for: table.socketUsers))
            actions.append(.reportReload(ids, .failed("canary refused: \(obstacle); nothing changed")))
            startPendingReload(into: &actions)
            return
        }
        phase = .reloading(ids)
        startRollout(configuration, replacing: serving.number, ids: ids, canary: canary, into: &actions)
    }

    /// The canary's workers are all ready: they take their share beside every old worker,
    /// and the hold and the health check start.
    mutating func canaryReady(_ rollout: inout Rollout, slots: [Int], into actions: inout [SupervisorAction]) {
        guard let canary = rollout.canary, let index = table.index(of: rollout.to) else { return }
        rollout.canarySlots = slots
        self.rollout = rollout
        steer(into: &actions)
        if let hold = canary.hold {
            actions.append(.startTimer(.canaryHold(generation: rollout.to), after: hold))
        }
        let settings = table[index].configuration.workers
        if settings.canaryCheck != nil {
            actions.append(.startTimer(.canaryCheck(generation: rollout.to), after: settings.canaryCheckInterval))
        }
        if case .reloading(let ids) = phase {
            actions.append(
                .reportReload(
                    ids,
                    .canaryServing(
                        generation: rollout.to, slots: slots, weight: canary.weight,
                        hold: canary.hold, after: canary.after)))
        }
    }

    /// The canary is over (promoted or rolled back): its hold and its health check stop.
    func endCanary(_ rollout: inout Rollout) -> [SupervisorAction] {
        var actions: [SupervisorAction] = []
        if rollout.canary?.hold != nil {
            actions.append(.cancelTimer(.canaryHold(generation: rollout.to)))
        }
        if !rollout.canarySlots.isEmpty, table.generation(rollout.to)?.configuration.workers.canaryCheck != nil {
            actions.append(.cancelTimer(.canaryCheck(generation: rollout.to)))
        }
        rollout.canary = nil
        rollout.canarySlots = []
        return actions
    }

    mutating func canaryHoldEnded(_ number: Int, into actions: inout [SupervisorAction]) {
        guard let rollout, rollout.to == number, let canary = rollout.canary, rollout.failure == nil else { return }
        switch canary.after {
        case .promote:
            promote(into: &actions)
        case .rollback:
            rolloutFailed("the canary held for \(DurationFormat.string(canary.hold ?? .zero)) and was to be rolled back then", into: &actions)
        case nil:
            break
        }
    }

    /// The canary worker the health check of generation `number`'s canary runs against
    /// (the first ready one), while that canary holds and has a check.
    func canaryCheckTarget(_ number: Int) -> (worker: WorkerID, check: CanaryCheck, settings: WorkerConfiguration)? {
        guard let rollout, rollout.to == number, rollout.canary != nil, rollout.failure == nil, !rollout.canarySlots.isEmpty,
            let generation = table.generation(number),
            let check = generation.configuration.workers.canaryCheck,
            let worker = rollout.canarySlots.lazy.compactMap({ generation.workers[$0] }).first(where: { $0.state == .ready })
        else { return nil }
        return (worker.id, check, generation.configuration.workers)
    }

    /// A run of the canary's health check is over: a pass starts the count of failures
    /// again; `canary_check_failures` failures in a row roll the canary back at once.
    /// A result after the hold (promoted or rolled back) changes nothing.
    mutating func canaryCheckResult(_ number: Int, _ result: CanaryCheckResult, into actions: inout [SupervisorAction]) {
        guard var rollout, let target = canaryCheckTarget(number) else { return }
        let settings = target.settings
        switch result {
        case .passed:
            rollout.canaryCheckFailures = 0
        case .failed(let reason):
            rollout.canaryCheckFailures += 1
            if rollout.canaryCheckFailures >= settings.canaryCheckFailures {
                let times = rollout.canaryCheckFailures == 1 ? "once" : "\(rollout.canaryCheckFailures) times in a row"
                self.rollout = rollout
                rolloutFailed("canary health check \"\(target.check)\" failed \(times): \(reason)", into: &actions)
                return
            }
        }
        self.rollout = rollout
        actions.append(.startTimer(.canaryCheck(generation: number), after: settings.canaryCheckInterval))
    }

    /// The canary that holds becomes the whole new generation, by its configuration's
    /// strategy: rolling, its slots are the first ones replaced; all at once, it leaves
    /// the rotation and the other slots' workers start, to take over all together.
    mutating func promote(into actions: inout [SupervisorAction]) {
        guard var rollout, canaryCommandRefusal(promoting: true) == nil, rollout.failure == nil,
            let from = table.index(of: rollout.from), let to = table.index(of: rollout.to)
        else { return }
        let slots = rollout.canarySlots
        actions += endCanary(&rollout)
        let configuration = table[to].configuration
        if case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .promoted(generation: rollout.to, strategy: configuration.workers.strategy)))
        }
        guard configuration.workers.strategy == .rolling else {
            self.rollout = nil
            steer(into: &actions)
            for slot in 0..<configuration.workers.count where table[to].workers[slot] == nil {
                actions += table.startWorker(WorkerID(generation: rollout.to, slot: slot), at: to)
            }
            return
        }
        rollout.replaced = slots
        self.rollout = rollout
        handOver(slots, from: from, into: &actions)
    }
}
