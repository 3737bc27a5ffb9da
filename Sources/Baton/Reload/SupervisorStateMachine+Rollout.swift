/// The parent's side of a rollout (``RolloutStateMachine``): it starts one, hands it the
/// events that concern it, and performs what it asks on the generation table, as
/// ``SupervisorAction``s.
extension SupervisorStateMachine {
    /// The canary a reload asks for, checked against the service as it serves now
    /// (``RolloutStateMachine/canary(workers:weight:hold:after:servingAlone:)``).
    func canary(workers: Int, weight: Int?, hold: String?, after: String?) -> Result<Canary, RolloutStateMachine.CanaryRefusal> {
        let servingAlone = phase == .running && table.count == 1 ? serving : nil
        return RolloutStateMachine.canary(workers: workers, weight: weight, hold: hold, after: after, servingAlone: servingAlone)
    }

    /// Whether `batonctl promote` (or `rollback`) can act now: the canary's generation, or why not.
    func canaryCommand(promoting: Bool) -> Result<Int, RolloutStateMachine.CanaryRefusal> {
        guard let rollout else { return .failure(.init(reason: "no canary holds")) }
        if let refusal = rollout.commandRefusal(promoting: promoting) {
            return .failure(.init(reason: refusal))
        }
        return .success(rollout.to)
    }

    mutating func canaryConfigurationLoaded(_ configuration: Configuration, _ canary: Canary, into actions: inout [SupervisorAction]) {
        guard case .loadingConfiguration(let ids) = phase, let serving else {
            actions.append(.retainSockets(for: table.socketUsers))
            return
        }
        if let obstacle = RolloutStateMachine.canaryObstacle(from: serving.configuration, to: configuration, canary) {
            phase = .running
            actions.append(.retainSockets(for: table.socketUsers))
            actions.append(.reportReload(ids, .failed("canary refused: \(obstacle); nothing changed")))
            startPendingReload(into: &actions)
            return
        }
        phase = .reloading(ids)
        startRollout(configuration, replacing: serving.number, canary: canary, into: &actions)
    }

    mutating func startRollout(
        _ configuration: Configuration, replacing from: Int, canary: Canary? = nil, into actions: inout [SupervisorAction]
    ) {
        let number = table[table.add(configuration)].number
        let count = configuration.workers.count
        rollout = RolloutStateMachine(from: from, to: number, batch: min(configuration.workers.batch, count), slots: count, canary: canary)
        feedRollout({ $0.start($1) }, into: &actions)
    }

    /// Hands the rollout an event and performs what it asks; then, the table being as
    /// those actions left it, lets it advance (which does nothing unless a batch can
    /// start or the rollout is over).
    mutating func feedRollout(_ event: (inout RolloutStateMachine, GenerationTable) -> [RolloutAction], into actions: inout [SupervisorAction]) {
        perform(event, into: &actions)
        perform({ $0.advance($1) }, into: &actions)
    }

    /// Lets the rollout start its next batch or end, if it can.
    mutating func advanceRollout(into actions: inout [SupervisorAction]) {
        perform({ $0.advance($1) }, into: &actions)
    }

    /// A worker of the new generation exited while the rollout went on: a replaced or
    /// canary slot's worker leaves the rotation (what its sockets hold moves on) while
    /// the rollout still counts it in, and then the rollout turns back.
    mutating func rolloutWorkerExited(_ worker: Worker, _ exit: WorkerExit, lastWords: [String], into actions: inout [SupervisorAction]) {
        guard let rollout else { return }
        let id = worker.id
        actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
        let (leavesRotation, reason) = rollout.exited(worker, exit)
        if leavesRotation, steer(into: &actions) {
            actions.append(.evacuate(generation: id.generation, slot: id.slot))
        }
        feedRollout({ $0.fail(reason + WorkerExit.lastOutput(lastWords), $1) }, into: &actions)
        removeFinishedGenerations(into: &actions)
        advanceRollout(into: &actions)
        startPendingReload(into: &actions)
    }

    private mutating func perform(_ event: (inout RolloutStateMachine, GenerationTable) -> [RolloutAction], into actions: inout [SupervisorAction]) {
        guard var rollout else { return }
        let asked = event(&rollout, table)
        self.rollout = rollout
        for action in asked {
            perform(action, of: rollout, into: &actions)
        }
    }

    private mutating func perform(_ action: RolloutAction, of rollout: RolloutStateMachine, into actions: inout [SupervisorAction]) {
        switch action {
        case .startWorkers(let number, let slots):
            guard let from = table.index(of: rollout.from), let starting = table.index(of: number) else { return }
            for slot in slots {
                // The old generation's slot waiting for its restart is replaced instead.
                actions += table.cancelRestart(slot: slot, at: from)
                if starting == from {
                    actions += table.restartWorker(slot: slot, at: from)
                } else {
                    actions += table.startWorker(WorkerID(generation: number, slot: slot), at: starting)
                }
            }
        case .stopWorkers(let number, let slots):
            guard let index = table.index(of: number) else { return }
            stopStarting(slots, at: index, into: &actions)
        case .steer:
            steer(into: &actions)
        case .handOver(let slots, let number):
            steer(into: &actions)
            guard let index = table.index(of: number) else { return }
            for slot in slots {
                depart(index, slot: slot, into: &actions)
            }
        case .report(let progress):
            if case .reloading(let ids) = phase {
                actions.append(.reportReload(ids, progress))
            }
        case .rolledBack(let reason, let planned):
            if case .reloading(let ids) = phase {
                let progress: ReloadProgress =
                    planned ? .canceled(generation: rollout.to, reason: reason) : .rolledBack(generation: rollout.to, reason: reason)
                actions.append(.reportReload(ids, progress))
            }
            phase = .running
        case .tookOver:
            finishRollout(rollout, into: &actions)
        case .gaveBack:
            finishRollback(rollout, into: &actions)
        case .promotedAllAtOnce:
            self.rollout = nil
            steer(into: &actions)
            guard let to = table.index(of: rollout.to) else { return }
            for slot in 0..<table[to].configuration.workers.count where table[to].workers[slot] == nil {
                actions += table.startWorker(WorkerID(generation: rollout.to, slot: slot), at: to)
            }
        case .startTimer(let timer, let delay):
            actions.append(.startTimer(timer, after: delay))
        case .cancelTimer(let timer):
            actions.append(.cancelTimer(timer))
        case .runCanaryCheck(let worker, let check, let timeout):
            actions.append(.runCanaryCheck(worker, check, timeout: timeout))
        case .measureCanary:
            actions.append(.measureCanary(generation: rollout.to))
        }
    }

    /// The slots' workers, never in rotation, leave their slots and are told to drain.
    private mutating func stopStarting(_ slots: [Int], at index: Int, into actions: inout [SupervisorAction]) {
        let settings = table[index].configuration.workers
        for slot in slots {
            guard let worker = table.retire(slot: slot, at: index) else { continue }
            if worker.state == .starting {
                actions.append(.cancelTimer(.readyTimeout(worker.id)))
            }
            if worker.state != .killed {
                table[index].retired[worker.id]?.state = .draining
                actions.append(.signal(worker.id, settings.drainSignal))
            }
            actions.append(.startTimer(.retiredDeadline(worker.id), after: settings.drainTimeout))
        }
    }

    /// Every slot is the new generation's: it serves, the old one is done once its last
    /// departing workers have exited.
    private mutating func finishRollout(_ rollout: RolloutStateMachine, into actions: inout [SupervisorAction]) {
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
    private mutating func finishRollback(_ rollout: RolloutStateMachine, into actions: inout [SupervisorAction]) {
        guard table.index(of: rollout.from) != nil, let to = table.index(of: rollout.to) else { return }
        self.rollout = nil
        table[to].role = .rollingBack
        steer(into: &actions)
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }
}
