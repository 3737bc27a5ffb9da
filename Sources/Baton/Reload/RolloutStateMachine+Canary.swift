/// A canary: the rollout's first batch (the canary's workers) takes a share of new
/// connections beside every old worker and holds, with its health check running, until
/// it is promoted (the rest follows by the configured strategy) or rolled back.
extension RolloutStateMachine {
    /// The canary of a rollout, from its start until it is promoted or rolled back.
    struct CanaryHold: Sendable, Equatable {
        /// What the reload asked for.
        let asked: Canary
        /// The canary's slots, once its workers are ready: their sockets of `to` take a
        /// share of new connections beside every socket of `from`.
        var slots: [Int] = []
        /// The health check's runs that failed in a row.
        var checkFailures = 0
        /// When the canary took its share, in seconds on the monotonic clock, as the
        /// shell measured it (``SupervisorEvent/canaryMeasured(generation:at:steered:)``).
        var tookShareAt: Double?
        /// The steering counters then, by generation, every listener together: where
        /// each generation's share since then counts from. Nil when none is steered.
        var steeredThen: [Int: UInt64]?

        /// When the hold ends, on the monotonic clock, once the canary took its share.
        var holdEnds: Double? {
            guard let hold = asked.hold, let tookShareAt else { return nil }
            return tookShareAt + Double(hold.components.seconds)
        }
    }

    /// Why a reload is refused its canary.
    struct CanaryRefusal: Error, Equatable {
        var reason: String
    }

    /// The canary a reload asks for (`batonctl reload --canary K --weight --hold
    /// --after`, its text as given), checked against the service as it serves now:
    /// `servingAlone` is the serving generation if it serves alone and no reload is
    /// under way. A canary starts only then, and leaves at least one old slot.
    static func canary(
        workers: Int, weight: Int?, hold: String?, after: String?, servingAlone: SupervisorStateMachine.Generation?
    ) -> Result<Canary, CanaryRefusal> {
        guard let serving = servingAlone else {
            return .failure(.init(reason: "a canary starts only while one generation serves alone; ask again once the reload under way is over"))
        }
        let count = serving.configuration.workers.count
        guard workers >= 1, workers < count else {
            let reason =
                switch count {
                case 1: "a canary needs a service of at least 2 slots, so that an old worker serves beside it; this one has 1 (scale it up first)"
                case 2: "a canary of this service is 1 worker (it has 2 slots, and one old worker serves beside the canary), got \(workers)"
                default: "a canary is 1 to \(count - 1) workers (the service has \(count) slots, and at least one old worker serves beside it), got \(workers)"
                }
            return .failure(.init(reason: reason))
        }
        let weight = weight ?? Canary.defaultWeight
        guard Canary.weights.contains(weight) else {
            return .failure(.init(reason: "a canary's weight is 1 to 99 percent, got \(weight)"))
        }
        var duration: Duration?
        if let hold {
            guard let parsed = DurationFormat.parse(hold), parsed > .zero, parsed <= Settings.longestDuration else {
                return .failure(.init(reason: "\"hold\" must be a duration such as \"5m\", more than 0 and at most 24h, got \"\(hold)\""))
            }
            duration = parsed
        }
        var end: Canary.After?
        if let after {
            guard let value = Canary.After(rawValue: after) else {
                return .failure(.init(reason: "\"after\" must be \"promote\" or \"rollback\", got \"\(after)\""))
            }
            guard duration != nil else {
                return .failure(.init(reason: "\"after\" needs a \"hold\": what happens at its end"))
            }
            end = value
        }
        return .success(Canary(workers: workers, weight: weight, hold: duration, after: end))
    }

    /// Why a canary of `canary.workers` workers cannot go from `old` to `new`, if it cannot.
    static func canaryObstacle(from old: Configuration, to new: Configuration, _ canary: Canary) -> String? {
        if let obstacle = SupervisorStateMachine.flowsObstacle(new) ?? rollingObstacle(from: old, to: new) { return obstacle }
        if canary.workers >= new.workers.count {
            return "a canary of \(canary.workers) worker(s) needs more than \(canary.workers) slots, the service has \(new.workers.count)"
        }
        return nil
    }

    /// Why a reload cannot be asked for while this rollout goes on, if it cannot: a
    /// canary holds until it is promoted or rolled back.
    var reloadRefusal: String? {
        guard canary != nil else { return nil }
        return "a canary of generation \(to) holds: promote it (batonctl promote) or roll it back (batonctl rollback) first"
    }

    /// Why `batonctl promote` (or `rollback`, when `promoting` is false) cannot act now,
    /// if it cannot: a canary must hold, and for a promotion its workers be ready.
    func commandRefusal(promoting: Bool) -> String? {
        guard let canary else {
            return "no canary holds"
        }
        guard !promoting || !canary.slots.isEmpty else {
            return "the canary of generation \(to) is not ready yet"
        }
        return nil
    }

    /// The canary's workers are all ready: they take their share beside every old
    /// worker, the hold and the health check start, and the shell measures the moment.
    mutating func canaryReady(slots: [Int], _ table: GenerationTable) -> [RolloutAction] {
        guard let asked = canary?.asked, let generation = table.generation(to) else { return [] }
        canary?.slots = slots
        var actions: [RolloutAction] = [.steer]
        if let hold = asked.hold {
            actions.append(.startTimer(.canaryHold(generation: to), after: hold))
        }
        let settings = generation.configuration.workers
        if settings.canaryCheck != nil {
            actions.append(.startTimer(.canaryCheck(generation: to), after: settings.canaryCheckInterval))
        }
        actions.append(.report(.canaryServing(generation: to, slots: slots, weight: asked.weight, hold: asked.hold, after: asked.after)))
        actions.append(.measureCanary)
        return actions
    }

    /// The shell measured the moment the canary took its share.
    mutating func canaryMeasured(at time: Double, steered: [Int: UInt64]?) {
        guard canary != nil, canary?.tookShareAt == nil else { return }
        canary?.tookShareAt = time
        canary?.steeredThen = steered
    }

    /// The canary is over (promoted or rolled back): its hold and its health check stop.
    mutating func endCanary(_ table: GenerationTable) -> [RolloutAction] {
        guard let canary else { return [] }
        var actions: [RolloutAction] = []
        if canary.asked.hold != nil {
            actions.append(.cancelTimer(.canaryHold(generation: to)))
        }
        if !canary.slots.isEmpty, table.generation(to)?.configuration.workers.canaryCheck != nil {
            actions.append(.cancelTimer(.canaryCheck(generation: to)))
        }
        self.canary = nil
        return actions
    }

    /// `batonctl rollback`: the canary that holds drains, the old generation serves alone.
    mutating func rollbackRequested(_ table: GenerationTable) -> [RolloutAction] {
        guard canary != nil else { return [] }
        return fail("rolled back by batonctl rollback", table, planned: true)
    }

    /// The hold of generation `number`'s canary is over: it is promoted or rolled back
    /// as asked, or holds on until asked.
    mutating func holdEnded(_ number: Int, _ table: GenerationTable) -> [RolloutAction] {
        guard to == number, let canary, failure == nil else { return [] }
        switch canary.asked.after {
        case .promote:
            return promote(table)
        case .rollback:
            return fail(
                "the canary held for \(DurationFormat.string(canary.asked.hold ?? .zero)) and was to be rolled back then", table, planned: true)
        case nil:
            return []
        }
    }

    /// The canary worker the health check of generation `number`'s canary runs against
    /// (the first ready one), while that canary holds and has a check.
    func checkTarget(_ number: Int, _ table: GenerationTable) -> (worker: WorkerID, check: CanaryCheck, settings: WorkerConfiguration)? {
        guard to == number, let canary, failure == nil, !canary.slots.isEmpty,
            let generation = table.generation(number),
            let check = generation.configuration.workers.canaryCheck,
            let worker = canary.slots.lazy.compactMap({ generation.workers[$0] }).first(where: { $0.state == .ready })
        else { return nil }
        return (worker.id, check, generation.configuration.workers)
    }

    /// Time for the health check of generation `number`'s canary to run again.
    func checkDue(_ number: Int, _ table: GenerationTable) -> [RolloutAction] {
        guard let target = checkTarget(number, table) else { return [] }
        return [.runCanaryCheck(target.worker, target.check, timeout: target.settings.canaryCheckInterval)]
    }

    /// A run of the canary's health check is over: a pass starts the count of failures
    /// again; `canary_check_failures` failures in a row roll the canary back at once.
    /// A result after the hold (promoted or rolled back) changes nothing.
    mutating func checkResult(_ number: Int, _ result: CanaryCheckResult, _ table: GenerationTable) -> [RolloutAction] {
        guard let target = checkTarget(number, table), var canary else { return [] }
        switch result {
        case .passed:
            canary.checkFailures = 0
        case .failed(let reason):
            canary.checkFailures += 1
            if canary.checkFailures >= target.settings.canaryCheckFailures {
                let times = canary.checkFailures == 1 ? "once" : "\(canary.checkFailures) times in a row"
                self.canary = canary
                return fail("canary health check \"\(target.check)\" failed \(times): \(reason)", table)
            }
        }
        self.canary = canary
        return [.startTimer(.canaryCheck(generation: number), after: target.settings.canaryCheckInterval)]
    }

    /// The canary that holds becomes the whole new generation, by its configuration's
    /// strategy: rolling, its slots are the first ones replaced; all at once, it leaves
    /// the rotation and the other slots' workers start, to take over all together.
    mutating func promote(_ table: GenerationTable) -> [RolloutAction] {
        guard commandRefusal(promoting: true) == nil, failure == nil, table.generation(from) != nil,
            let configuration = table.generation(to)?.configuration, let slots = canary?.slots
        else { return [] }
        var actions = endCanary(table)
        actions.append(.report(.promoted(generation: to, strategy: configuration.workers.strategy)))
        guard configuration.workers.strategy == .rolling else {
            return actions + [.promotedAllAtOnce]
        }
        replaced = slots
        return actions + handOver(slots, from: from)
    }
}
