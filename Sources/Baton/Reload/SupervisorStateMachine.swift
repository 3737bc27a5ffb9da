/// Every start, reload, drain, rollback, restart and stop decision of Baton.
///
/// Pure: events in, actions out, no I/O and no clock. The ``Supervisor`` performs the
/// actions and feeds back what happened. The rules it keeps:
///
/// - a new generation takes over only once every one of its workers is ready; until
///   then the serving generation is untouched;
/// - new connections go only to sockets of the serving generation whose worker is
///   ready (the rotation, which is never emptied); a taken-over generation leaves the
///   rotation at once and gets its drain signal only once its own sockets are empty,
///   or after the drain grace;
/// - a slot whose worker is gone leaves the rotation, and what its sockets hold moves
///   to the slots in rotation;
/// - if any new worker exits or misses its ready timeout, the whole new generation is
///   stopped and the old one keeps serving (rollback);
/// - at most two generations are alive; reloads asked for meanwhile wait and collapse
///   into one;
/// - with a stall timeout, a serving worker that leaves connections in its sockets and
///   accepts none for that long is taken out of rotation and its slot, told to drain,
///   and replaced;
/// - a crashed worker of the serving generation is restarted in its slot after a delay
///   that doubles with each crash in a row, and never affects the other slots;
/// - a stop drains every worker and exits once all are gone; a second stop kills them;
/// - a rolling reload (Docs/rollouts.md) replaces `batch` slots at a time: their new
///   workers start, and once all of them are ready those slots' sockets of the new
///   generation take the old ones' place in the rotation, and the old workers there
///   leave like a replaced generation (drain signal once their slot's sockets are empty,
///   or after the drain grace); the next batch starts once they have exited, so at most
///   `count + batch` workers are alive. A new worker that exits or misses its ready
///   timeout ends the rollout: the reload is reported rolled back at once, and the
///   replaced slots go back to the old generation the same way, last replaced first,
///   with old-configuration workers started again in their slots;
/// - a canary's health check (`canary_check`) runs only while the canary holds, once its
///   workers are ready: one run at a time, each `canary_check_interval` after the last
///   one ended; `canary_check_failures` failures in a row roll the canary back, a pass
///   starts the count again, and a result after the hold changes nothing.
///
/// This file holds the phase, the dispatch of events, starting, stopping and the queue
/// of reload requests. Who is where is the ``GenerationTable``; each concern decided on
/// it has its own file: `+SlotLifecycle` (ready, exit, crash backoff, stall), `+Drain`
/// (leave the rotation, settle, drain signal, kill, depart), and ``Rotation`` (which
/// sockets take new connections). A rollout (rolling, or a canary with its hold, health
/// check, promote and rollback) is a sub-machine of its own, ``RolloutStateMachine``,
/// whose actions `+Rollout` performs.
struct SupervisorStateMachine: Sendable {
    enum Phase: Sendable, Equatable {
        /// Nothing started yet.
        case idle
        /// The first generation is starting.
        case starting
        case running
        case loadingConfiguration([ReloadRequestID])
        /// A new generation (the last one) is starting.
        case reloading([ReloadRequestID])
        case stopping
        case stopped
    }

    internal(set) var phase: Phase = .idle
    /// Who is where.
    var table = GenerationTable()
    /// Reload requests waiting for the current one to finish.
    internal(set) var pendingReloads: [ReloadRequestID] = []
    /// What the waiting requests asked for, pooled: the reload they become gets it.
    var pendingOptions = ReloadOptions.configured
    /// The rollout under way (rolling, or a canary), forward or back.
    internal(set) var rollout: RolloutStateMachine?
    var exitCode: Int32 = 0
    var exitReason: String?

    /// How long a restarted worker must serve before its slot's crashes are forgotten.
    static let healthyAfter: Duration = .seconds(10)
    /// From this many crashes in a row a slot is reported as crash-looping.
    static let crashLoopThreshold = 3

    init() {}

    /// Alive generations, oldest first.
    var generations: [Generation] { table.generations }

    /// The generation whose workers serve, if any.
    var serving: Generation? { table.serving }

    /// Generation `number`, if it is alive.
    func generation(_ number: Int) -> Generation? { table.generation(number) }

    mutating func handle(_ event: SupervisorEvent) -> [SupervisorAction] {
        var actions: [SupervisorAction] = []
        switch event {
        case .start(let configuration):
            guard phase == .idle else { return [] }
            phase = .starting
            startGeneration(configuration, into: &actions)
        case .resume(let configuration, let number, let workers):
            guard phase == .idle else { return [] }
            resume(configuration, number, workers, into: &actions)
        case .reloadRequested(let id, let options):
            reloadRequested(id, options, into: &actions)
        case .configurationLoaded(let configuration, let canary?):
            canaryConfigurationLoaded(configuration, canary, into: &actions)
        case .configurationLoaded(let configuration, nil):
            configurationLoaded(configuration, into: &actions)
        case .promoteRequested:
            feedRollout({ $0.promote($1) }, into: &actions)
        case .rollbackRequested:
            feedRollout({ $0.rollbackRequested($1) }, into: &actions)
        case .canaryCheckResult(let number, let result):
            feedRollout({ $0.checkResult(number, result, $1) }, into: &actions)
        case .canaryMeasured(let number, let time, let steered):
            guard rollout?.to == number else { break }
            rollout?.canaryMeasured(at: time, steered: steered)
        case .configurationRejected(let reason):
            guard case .loadingConfiguration(let ids) = phase else { break }
            phase = .running
            actions.append(.reportReload(ids, .configurationRejected(reason)))
            startPendingReload(into: &actions)
        case .workerReady(let id):
            workerReady(id, into: &actions)
        case .workerStatus(let id, let status):
            table.update(id) { $0.status = status }
        case .workerStopping(let id):
            table.update(id) { $0.announcedStopping = true }
        case .workerStalled(let id):
            workerStalled(id, into: &actions)
        case .workerExited(let id, let exit, let lastWords):
            workerExited(id, exit, lastWords: lastWords, into: &actions)
        case .timerFired(let timer):
            timerFired(timer, into: &actions)
        case .slotQueuesEmpty(let id):
            drainDeparted(id, into: &actions)
        case .queuesEmpty(let number):
            guard let index = table.index(of: number), table[index].role == .leaving else { break }
            drain(index, into: &actions)
        case .stopRequested:
            stopRequested(into: &actions)
        }
        return actions
    }

    // MARK: - Starting generations

    @discardableResult
    mutating func startGeneration(_ configuration: Configuration, into actions: inout [SupervisorAction]) -> Int {
        let index = table.add(configuration)
        let number = table[index].number
        for slot in 0..<configuration.workers.count {
            actions += table.startWorker(WorkerID(generation: number, slot: slot), at: index)
        }
        return number
    }

    /// Takes over the workers a replaced Baton binary handed over, all ready, as
    /// generation `number`.
    private mutating func resume(
        _ configuration: Configuration, _ number: Int, _ workers: [WorkerID],
        into actions: inout [SupervisorAction]
    ) {
        phase = .running
        var generation = Generation(number: number, configuration: configuration)
        generation.role = .serving
        for id in workers where id.generation == number && id.slot < configuration.workers.count {
            generation.workers[id.slot] = Worker(id: id, state: .ready)
            generation.starts[id.slot] = id.start
        }
        table.adopt(generation)
        // A slot whose worker exited meanwhile restarts at once.
        for slot in 0..<configuration.workers.count where table[0].workers[slot] == nil {
            actions.append(table.scheduleRestart(slot: slot, at: 0, after: .zero))
        }
        steer(into: &actions)
        actions.append(.announce(.serving(generation: number)))
        // The control socket answers before the resume: a reload asked for then waited.
        startPendingReload(into: &actions)
    }

    private mutating func reloadRequested(_ id: ReloadRequestID, _ options: ReloadOptions, into actions: inout [SupervisorAction]) {
        if let refusal = rollout?.reloadRefusal, case .reloading = phase {
            actions.append(.reportReload([id], .failed(refusal)))
            return
        }
        switch phase {
        case .stopping, .stopped:
            actions.append(.reportReload([id], .failed("Baton is stopping")))
        case .running where generationsHoldingReloads == 1:
            phase = .loadingConfiguration([id])
            actions.append(.loadConfiguration(options))
            actions.append(.reportReload([id], .loadingConfiguration))
        default:
            pendingReloads.append(id)
            pendingOptions = pendingOptions.merging(options)
            actions.append(.reportReload([id], .queued))
        }
    }

    private mutating func configurationLoaded(_ configuration: Configuration, into actions: inout [SupervisorAction]) {
        guard case .loadingConfiguration(let ids) = phase else {
            // A stop overtook the reload: drop what was opened for it.
            actions.append(.retainSockets(for: table.socketUsers))
            return
        }
        phase = .reloading(ids)
        if configuration.workers.strategy == .rolling, let serving {
            if let obstacle = Self.flowsObstacle(configuration) ?? RolloutStateMachine.rollingObstacle(from: serving.configuration, to: configuration) {
                actions.append(.reportReload(ids, .allAtOnceInstead(obstacle)))
            } else {
                startRollout(configuration, replacing: serving.number, into: &actions)
                return
            }
        }
        let number = startGeneration(configuration, into: &actions)
        actions.append(.reportReload(ids, .starting(generation: number, workers: configuration.workers.count)))
    }

    /// Starts the reloads that waited, once the last one is over and only one generation is left.
    mutating func startPendingReload(into actions: inout [SupervisorAction]) {
        guard phase == .running, generationsHoldingReloads == 1, !pendingReloads.isEmpty else { return }
        let ids = pendingReloads
        let options = pendingOptions
        pendingReloads = []
        pendingOptions = .configured
        phase = .loadingConfiguration(ids)
        actions.append(.loadConfiguration(options))
        actions.append(.reportReload(ids, .loadingConfiguration))
    }

    /// Every worker of the starting generation is ready: it serves, the old one leaves
    /// the rotation and drains once its sockets are empty.
    mutating func takeOver(_ index: Int, into actions: inout [SupervisorAction]) {
        let number = table[index].number
        table[index].role = .serving
        steer(into: &actions)
        var replaced: Int?
        for oldIndex in table.indices where table[oldIndex].role == .serving && oldIndex != index {
            replaced = table[oldIndex].number
            replace(oldIndex, into: &actions)
        }
        switch phase {
        case .starting:
            actions.append(.announce(.serving(generation: number)))
        case .reloading(let ids):
            actions.append(.reportReload(ids, .tookOver(generation: number, replaced: replaced)))
        default:
            break
        }
        phase = .running
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }

    // MARK: - Timers

    private mutating func timerFired(_ timer: SupervisorTimer, into actions: inout [SupervisorAction]) {
        switch timer {
        case .readyTimeout(let id):
            readyTimeout(id, into: &actions)
        case .healthy(let id):
            guard let index = table.index(of: id), table.worker(id) != nil else { return }
            table[index].crashes[id.slot] = nil
        case .restart(let number, let slot):
            restart(number, slot: slot, into: &actions)
        case .drainDeadline(let number):
            guard let index = table.index(of: number) else { return }
            kill(index, into: &actions)
        case .retiredDeadline(let id):
            guard let index = table.index(of: id), table[index].retired[id]?.state == .draining else { return }
            table[index].retired[id]?.state = .killed
            actions.append(.signal(id, SIGKILL_))
        case .departureGrace(let id):
            drainDeparted(id, into: &actions)
        case .canaryHold(let number):
            feedRollout({ $0.holdEnded(number, $1) }, into: &actions)
        case .canaryCheck(let number):
            feedRollout({ $0.checkDue(number, $1) }, into: &actions)
        case .drainGrace(let number):
            guard let index = table.index(of: number), table[index].role == .leaving else { return }
            drain(index, into: &actions)
        }
    }

    // MARK: - Stopping

    /// The first generation could not start: stop everything and exit non-zero.
    mutating func fail(_ reason: String, into actions: inout [SupervisorAction]) {
        exitCode = 1
        exitReason = reason
        stop(into: &actions)
    }

    private mutating func stopRequested(into actions: inout [SupervisorAction]) {
        switch phase {
        case .stopping:
            for index in table.indices {
                kill(index, into: &actions)
            }
        case .stopped:
            break
        default:
            stop(into: &actions)
        }
    }

    private mutating func stop(into actions: inout [SupervisorAction]) {
        switch phase {
        case .loadingConfiguration(let ids), .reloading(let ids):
            actions.append(.reportReload(ids, .failed("Baton is stopping")))
        default:
            break
        }
        if !pendingReloads.isEmpty {
            actions.append(.reportReload(pendingReloads, .failed("Baton is stopping")))
            pendingReloads = []
            pendingOptions = .configured
        }
        phase = .stopping
        rollout = nil
        actions.append(.announce(.stopping))
        for index in table.indices {
            drain(index, into: &actions)
        }
        removeFinishedGenerations(into: &actions)
    }

    /// Forgets draining generations with no worker left; exits when stopping and none is left.
    mutating func removeFinishedGenerations(into actions: inout [SupervisorAction]) {
        let finished = table.removeFinished()
        if !finished.isEmpty {
            for generation in finished {
                if generation.role == .leaving {
                    actions.append(.cancelTimer(.drainGrace(generation: generation.number)))
                }
                actions.append(.cancelTimer(.drainDeadline(generation: generation.number)))
                actions.append(.announce(.generationGone(generation.number)))
            }
            // Stopping keeps every socket until exit: what is queued there then waits
            // in the fd store for the next start instead of being reset.
            if phase != .stopping {
                actions.append(.retainSockets(for: table.socketUsers))
            }
        }
        if phase == .stopping && table.isEmpty {
            phase = .stopped
            actions.append(.exit(code: exitCode, reason: exitReason))
        }
    }
}

/// SIGKILL without importing Glibc into the pure state machine.
let SIGKILL_: Int32 = 9
