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
public struct SupervisorStateMachine: Sendable {
    public enum Phase: Sendable, Equatable {
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

    public private(set) var phase: Phase = .idle
    /// Alive generations, oldest first.
    public private(set) var generations: [Generation] = []
    /// Reload requests waiting for the current one to finish.
    public private(set) var pendingReloads: [ReloadRequestID] = []
    /// The rolling reload under way, forward or back.
    public private(set) var rollout: Rollout?
    private var nextGeneration = 1
    private var exitCode: Int32 = 0
    private var exitReason: String?

    /// How long a restarted worker must serve before its slot's crashes are forgotten.
    public static let healthyAfter: Duration = .seconds(10)
    /// From this many crashes in a row a slot is reported as crash-looping.
    public static let crashLoopThreshold = 3

    public init() {}

    /// The generation whose workers serve, if any.
    public var serving: Generation? {
        generations.last { $0.role == .serving }
    }

    public mutating func handle(_ event: SupervisorEvent) -> [SupervisorAction] {
        var actions: [SupervisorAction] = []
        switch event {
        case .start(let configuration):
            guard phase == .idle else { return [] }
            phase = .starting
            startGeneration(configuration, into: &actions)
        case .resume(let configuration, let number, let workers):
            guard phase == .idle else { return [] }
            phase = .running
            nextGeneration = number + 1
            var generation = Generation(number: number, configuration: configuration)
            generation.role = .serving
            for id in workers where id.generation == number && id.slot < configuration.workers.count {
                generation.workers[id.slot] = Worker(id: id, state: .ready)
                generation.starts[id.slot] = id.start
            }
            // A slot whose worker exited meanwhile restarts at once.
            for slot in 0..<configuration.workers.count where generation.workers[slot] == nil {
                generation.restarting.insert(slot)
                actions.append(.startTimer(.restart(generation: number, slot: slot), after: .zero))
            }
            generations = [generation]
            steer(0, into: &actions)
            actions.append(.announce(.serving(generation: number)))
        case .reloadRequested(let id):
            reloadRequested(id, into: &actions)
        case .configurationLoaded(let configuration):
            guard case .loadingConfiguration(let ids) = phase else {
                // A stop overtook the reload: drop what was opened for it.
                actions.append(.retainSockets(for: socketUsers))
                break
            }
            phase = .reloading(ids)
            if configuration.workers.strategy == .rolling, let serving {
                if let obstacle = Self.rollingObstacle(from: serving.configuration, to: configuration) {
                    actions.append(.reportReload(ids, .allAtOnceInstead(obstacle)))
                } else {
                    startRollout(configuration, replacing: serving.number, ids: ids, into: &actions)
                    break
                }
            }
            let number = startGeneration(configuration, into: &actions)
            actions.append(.reportReload(ids, .starting(generation: number, workers: configuration.workers.count)))
        case .canaryConfigurationLoaded(let configuration, let canary):
            guard case .loadingConfiguration(let ids) = phase, let serving else {
                actions.append(.retainSockets(for: socketUsers))
                break
            }
            if let obstacle = Self.canaryObstacle(from: serving.configuration, to: configuration, canary) {
                phase = .running
                actions.append(.retainSockets(for: socketUsers))
                actions.append(.reportReload(ids, .failed("canary refused: \(obstacle); nothing changed")))
                startPendingReload(into: &actions)
                break
            }
            phase = .reloading(ids)
            startRollout(configuration, replacing: serving.number, ids: ids, canary: canary, into: &actions)
        case .promoteRequested:
            promote(into: &actions)
        case .rollbackRequested:
            guard rollout?.canary != nil else { break }
            rolloutFailed("rolled back by batonctl rollback", into: &actions)
        case .canaryCheckResult(let number, let result):
            canaryCheckResult(number, result, into: &actions)
        case .configurationRejected(let reason):
            guard case .loadingConfiguration(let ids) = phase else { break }
            phase = .running
            actions.append(.reportReload(ids, .failed(reason)))
            startPendingReload(into: &actions)
        case .workerReady(let id):
            workerReady(id, into: &actions)
        case .workerStatus(let id, let status):
            updateWorker(id) { $0.status = status }
        case .workerStopping(let id):
            updateWorker(id) { $0.announcedStopping = true }
        case .workerStalled(let id):
            workerStalled(id, into: &actions)
        case .workerExited(let id, let exit):
            workerExited(id, exit, into: &actions)
        case .timerFired(let timer):
            timerFired(timer, into: &actions)
        case .slotQueuesEmpty(let id):
            drainDeparted(id, into: &actions)
        case .queuesEmpty(let number):
            guard let index = generations.firstIndex(where: { $0.number == number }),
                  generations[index].role == .leaving else { break }
            drain(index, into: &actions)
        case .stopRequested:
            stopRequested(into: &actions)
        }
        return actions
    }

    // MARK: - Starting generations

    @discardableResult
    private mutating func startGeneration(_ configuration: Configuration, into actions: inout [SupervisorAction]) -> Int {
        let number = nextGeneration
        nextGeneration += 1
        var generation = Generation(number: number, configuration: configuration)
        for slot in 0..<configuration.workers.count {
            let worker = WorkerID(generation: number, slot: slot)
            generation.workers[slot] = Worker(id: worker)
            actions.append(.spawn(worker, configuration))
            actions.append(.startTimer(.readyTimeout(worker), after: configuration.workers.readyTimeout))
        }
        generations.append(generation)
        return number
    }

    private mutating func reloadRequested(_ id: ReloadRequestID, into actions: inout [SupervisorAction]) {
        if let rollout, rollout.canary != nil, case .reloading = phase {
            actions.append(.reportReload([id], .failed("a canary of generation \(rollout.to) holds: promote it (batonctl promote) or roll it back (batonctl rollback) first")))
            return
        }
        switch phase {
        case .stopping, .stopped:
            actions.append(.reportReload([id], .failed("Baton is stopping")))
        case .running where generations.count == 1:
            phase = .loadingConfiguration([id])
            actions.append(.loadConfiguration)
            actions.append(.reportReload([id], .loadingConfiguration))
        default:
            pendingReloads.append(id)
            actions.append(.reportReload([id], .queued))
        }
    }

    /// Starts the reloads that waited, once the last one is over and only one generation is left.
    private mutating func startPendingReload(into actions: inout [SupervisorAction]) {
        guard phase == .running, generations.count == 1, !pendingReloads.isEmpty else { return }
        let ids = pendingReloads
        pendingReloads = []
        phase = .loadingConfiguration(ids)
        actions.append(.loadConfiguration)
        actions.append(.reportReload(ids, .loadingConfiguration))
    }

    // MARK: - Worker events

    private mutating func workerReady(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = generationIndex(id), let worker = generations[index].workers[id.slot],
              worker.id == id, worker.state == .starting else {
            return  // Late: the worker already timed out, is draining, or is gone.
        }
        generations[index].workers[id.slot]?.state = .ready
        actions.append(.cancelTimer(.readyTimeout(id)))
        let generation = generations[index]
        switch generation.role {
        case .serving:
            actions.append(.startTimer(.healthy(id), after: Self.healthyAfter))
            steer(index, into: &actions)
            batchWorkerReady(id, into: &actions)
        case .starting:
            let ready = generation.workers.values.filter { $0.state == .ready }.count
            let total = generation.configuration.workers.count
            if case .reloading(let ids) = phase {
                actions.append(.reportReload(ids, .workerReady(id, ready: ready, of: total)))
            }
            if rollout?.to == generation.number {
                batchWorkerReady(id, into: &actions)
            } else if ready == total {
                takeOver(index, into: &actions)
            }
        case .leaving, .draining, .rollingBack:
            break
        }
    }

    /// Every worker of the starting generation is ready: it serves, the old one leaves
    /// the rotation and drains once its sockets are empty.
    private mutating func takeOver(_ index: Int, into actions: inout [SupervisorAction]) {
        let number = generations[index].number
        generations[index].role = .serving
        steer(index, into: &actions)
        var replaced: Int?
        for oldIndex in generations.indices where generations[oldIndex].role == .serving && oldIndex != index {
            replaced = generations[oldIndex].number
            leave(oldIndex, into: &actions)
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

    private mutating func workerExited(_ id: WorkerID, _ exit: WorkerExit, into actions: inout [SupervisorAction]) {
        if let index = generationIndex(id), let retired = generations[index].retired.removeValue(forKey: id) {
            if generations[index].departing.remove(id) != nil {
                if retired.state == .ready {
                    actions.append(.cancelTimer(.departureGrace(id)))
                } else {
                    actions.append(.cancelTimer(.retiredDeadline(id)))
                }
                // What reached its slot's sockets after it stopped accepting moves to the rotation.
                if phase != .stopping {
                    actions.append(.evacuate(generation: id.generation, slot: id.slot))
                }
            } else {
                actions.append(.cancelTimer(.retiredDeadline(id)))
            }
            actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
            removeFinishedGenerations(into: &actions)
            advanceRollout(into: &actions)
            startPendingReload(into: &actions)
            return
        }
        guard let index = generationIndex(id), let worker = generations[index].workers[id.slot], worker.id == id else {
            return
        }
        generations[index].workers[id.slot] = nil
        actions.append(.cancelTimer(.readyTimeout(id)))
        if worker.state == .ready {
            actions.append(.cancelTimer(.healthy(id)))
        }
        let generation = generations[index]
        if let rollout, rollout.to == generation.number {
            actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
            // A replaced or canary slot's new worker: out of rotation, what its sockets hold moves on.
            let inRotation = rollout.replaced.contains(id.slot) || rollout.canarySlots.contains(id.slot)
            if worker.state == .ready, inRotation, steer(index, into: &actions) {
                actions.append(.evacuate(generation: generation.number, slot: id.slot))
            }
            let when = rollout.canarySlots.contains(id.slot) ? "while the canary held"
                : worker.state == .ready && inRotation ? "after it took over" : "before it was ready"
            rolloutFailed("slot \(id.slot): worker \(id) \(exit) \(when)", into: &actions)
            removeFinishedGenerations(into: &actions)
            advanceRollout(into: &actions)
            startPendingReload(into: &actions)
            return
        }
        switch generation.role {
        case .starting where phase == .starting:
            actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
            fail("worker \(id) \(exit) before it was ready", into: &actions)
        case .starting:
            actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
            rollBack(index, reason: "worker \(id) \(exit) before it was ready", into: &actions)
        case .serving:
            if worker.state == .ready, steer(index, into: &actions) {
                actions.append(.evacuate(generation: generation.number, slot: id.slot))
            }
            let crashes = (generation.crashes[id.slot] ?? 0) + 1
            generations[index].crashes[id.slot] = crashes
            generations[index].restarting.insert(id.slot)
            let delay = restartDelay(after: crashes, generation.configuration.workers)
            actions.append(.announce(.workerExited(id, exit, restartAfter: delay)))
            actions.append(.startTimer(.restart(generation: generation.number, slot: id.slot), after: delay))
        case .leaving, .draining:
            // Out of rotation already: what its sockets still hold goes to the serving slots.
            if phase != .stopping {
                actions.append(.evacuate(generation: generation.number, slot: id.slot))
            }
        case .rollingBack:
            break
        }
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }

    /// A stalled worker of the serving generation is retired: it leaves its slot and the
    /// rotation (unless it is the last ready one: the rotation is never emptied), what its
    /// sockets hold moves to the slots in rotation, and it gets the drain signal, so that
    /// it answers what it holds if it wakes up, and is killed at its drain timeout if it
    /// does not. Its slot restarts as after a crash, with the same growing delay, so a
    /// slot that stalls again and again cannot pile up retired workers.
    private mutating func workerStalled(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = generationIndex(id), generations[index].role == .serving,
              var worker = generations[index].workers[id.slot], worker.id == id, worker.state == .ready,
              let timeout = generations[index].configuration.workers.stallTimeout else { return }
        let settings = generations[index].configuration.workers
        worker.state = .draining
        generations[index].workers[id.slot] = nil
        generations[index].retired[id] = worker
        actions.append(.cancelTimer(.healthy(id)))
        if steer(index, into: &actions) {
            actions.append(.evacuate(generation: id.generation, slot: id.slot))
        }
        let crashes = (generations[index].crashes[id.slot] ?? 0) + 1
        generations[index].crashes[id.slot] = crashes
        generations[index].restarting.insert(id.slot)
        let delay = restartDelay(after: crashes, settings)
        actions.append(.announce(.workerStalled(id, after: timeout, restartAfter: delay)))
        actions.append(.signal(id, settings.drainSignal))
        actions.append(.startTimer(.retiredDeadline(id), after: settings.drainTimeout))
        actions.append(.startTimer(.restart(generation: id.generation, slot: id.slot), after: delay))
    }

    private func restartDelay(after crashes: Int, _ workers: WorkerConfiguration) -> Duration {
        var delay = workers.restartDelay
        for _ in 1..<max(crashes, 1) where delay < workers.restartDelayMax {
            delay *= 2
        }
        return min(delay, workers.restartDelayMax)
    }

    // MARK: - Timers

    private mutating func timerFired(_ timer: SupervisorTimer, into actions: inout [SupervisorAction]) {
        switch timer {
        case .readyTimeout(let id):
            guard let index = generationIndex(id), let worker = generations[index].workers[id.slot],
                  worker.id == id, worker.state == .starting else { return }
            let timeout = DurationFormat.string(generations[index].configuration.workers.readyTimeout)
            let reason = "worker \(id) was not ready within \(timeout)"
            if rollout?.to == id.generation {
                rolloutFailed("slot \(id.slot): \(reason)", into: &actions)
                return
            }
            switch generations[index].role {
            case .starting where phase == .starting:
                fail(reason, into: &actions)
            case .starting:
                rollBack(index, reason: reason, into: &actions)
            case .serving:
                // A restarted worker that never got ready: kill it; its exit restarts the slot.
                generations[index].workers[id.slot]?.state = .killed
                actions.append(.signal(id, SIGKILL_))
            case .leaving, .draining, .rollingBack:
                break
            }
        case .healthy(let id):
            guard let index = generationIndex(id), generations[index].workers[id.slot]?.id == id else { return }
            generations[index].crashes[id.slot] = nil
        case .restart(let number, let slot):
            guard phase != .stopping, let index = generations.firstIndex(where: { $0.number == number }),
                  generations[index].role == .serving, generations[index].restarting.remove(slot) != nil else { return }
            let start = generations[index].starts[slot, default: 0] + 1
            generations[index].starts[slot] = start
            let worker = WorkerID(generation: number, slot: slot, start: start)
            generations[index].workers[slot] = Worker(id: worker)
            actions.append(.spawn(worker, generations[index].configuration))
            actions.append(.startTimer(.readyTimeout(worker), after: generations[index].configuration.workers.readyTimeout))
        case .drainDeadline(let number):
            guard let index = generations.firstIndex(where: { $0.number == number }) else { return }
            kill(index, into: &actions)
        case .retiredDeadline(let id):
            guard let index = generationIndex(id), generations[index].retired[id]?.state == .draining else { return }
            generations[index].retired[id]?.state = .killed
            actions.append(.signal(id, SIGKILL_))
        case .departureGrace(let id):
            drainDeparted(id, into: &actions)
        case .canaryHold(let number):
            guard let rollout, rollout.to == number, let canary = rollout.canary, rollout.failure == nil else { return }
            switch canary.after {
            case .promote:
                promote(into: &actions)
            case .rollback:
                rolloutFailed("the canary held for \(DurationFormat.string(canary.hold ?? .zero)) and was to be rolled back then", into: &actions)
            case nil:
                break
            }
        case .canaryCheck(let number):
            guard let target = canaryCheckTarget(number) else { return }
            actions.append(.runCanaryCheck(target.worker, target.check, timeout: target.settings.canaryCheckInterval))
        case .drainGrace(let number):
            guard let index = generations.firstIndex(where: { $0.number == number }),
                  generations[index].role == .leaving else { return }
            drain(index, into: &actions)
        }
    }

    // MARK: - Stopping workers

    /// Tells every live worker of the generation to drain, and arms its deadline.
    private mutating func drain(_ index: Int, role: Generation.Role = .draining, into actions: inout [SupervisorAction]) {
        let generation = generations[index]
        generations[index].role = role
        if generation.role == .leaving {
            actions.append(.cancelTimer(.drainGrace(generation: generation.number)))
        }
        generations[index].restarting.removeAll()
        for slot in generation.restarting {
            actions.append(.cancelTimer(.restart(generation: generation.number, slot: slot)))
        }
        for (slot, worker) in generation.workers.sorted(by: { $0.key < $1.key }) {
            switch worker.state {
            case .starting:
                actions.append(.cancelTimer(.readyTimeout(worker.id)))
            case .ready:
                actions.append(.cancelTimer(.healthy(worker.id)))
            case .draining, .killed:
                continue
            }
            generations[index].workers[slot]?.state = .draining
            actions.append(.signal(worker.id, generation.configuration.workers.drainSignal))
        }
        // Workers a rolling reload took out of their slots that still accept what their
        // sockets hold.
        for (id, worker) in generation.retired.sorted(by: { $0.key < $1.key }) where worker.state == .ready {
            generations[index].retired[id]?.state = .draining
            actions.append(.cancelTimer(.departureGrace(id)))
            actions.append(.signal(id, generation.configuration.workers.drainSignal))
        }
        if generation.role != .draining && generation.role != .rollingBack {
            actions.append(.startTimer(.drainDeadline(generation: generation.number),
                                       after: generation.configuration.workers.drainTimeout))
        }
    }

    /// Takes a replaced generation out of rotation; its workers keep accepting what its
    /// sockets already hold, and get the drain signal once those are empty.
    private mutating func leave(_ index: Int, into actions: inout [SupervisorAction]) {
        let generation = generations[index]
        generations[index].role = .leaving
        generations[index].restarting.removeAll()
        for slot in generation.restarting.sorted() {
            actions.append(.cancelTimer(.restart(generation: generation.number, slot: slot)))
        }
        for worker in generation.workers.values.sorted(by: { $0.id < $1.id }) {
            switch worker.state {
            case .starting: actions.append(.cancelTimer(.readyTimeout(worker.id)))
            case .ready: actions.append(.cancelTimer(.healthy(worker.id)))
            case .draining, .killed: break
            }
        }
        actions.append(.awaitEmptyQueues(generation: generation.number))
        actions.append(.startTimer(.drainGrace(generation: generation.number),
                                   after: generation.configuration.workers.drainGrace))
    }

    /// Points the rotation at the generation's slots whose worker is ready; returns
    /// false, changing nothing, when none is.
    @discardableResult
    private func steer(_ index: Int, into actions: inout [SupervisorAction]) -> Bool {
        if let rollout, rollout.from == generations[index].number || rollout.to == generations[index].number {
            return steer(rollout, into: &actions)
        }
        let slots = generations[index].workers.values.filter { $0.state == .ready }.map(\.id.slot).sorted()
        guard !slots.isEmpty else { return false }
        actions.append(.steer(generation: generations[index].number, slots: slots))
        return true
    }

    private mutating func kill(_ index: Int, into actions: inout [SupervisorAction]) {
        for (slot, worker) in generations[index].workers.sorted(by: { $0.key < $1.key }) where worker.state != .killed {
            generations[index].workers[slot]?.state = .killed
            actions.append(.signal(worker.id, SIGKILL_))
        }
        for (id, worker) in generations[index].retired.sorted(by: { $0.key < $1.key }) where worker.state != .killed {
            generations[index].retired[id]?.state = .killed
            actions.append(.cancelTimer(.retiredDeadline(id)))
            actions.append(.signal(id, SIGKILL_))
        }
    }

    private mutating func rollBack(_ index: Int, reason: String, into actions: inout [SupervisorAction]) {
        guard case .reloading(let ids) = phase else { return }
        drain(index, role: .rollingBack, into: &actions)
        phase = .running
        actions.append(.reportReload(ids, .rolledBack(generation: generations[index].number, reason: reason)))
    }

    /// The first generation could not start: stop everything and exit non-zero.
    private mutating func fail(_ reason: String, into actions: inout [SupervisorAction]) {
        exitCode = 1
        exitReason = reason
        stop(into: &actions)
    }

    private mutating func stopRequested(into actions: inout [SupervisorAction]) {
        switch phase {
        case .stopping:
            for index in generations.indices {
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
        }
        phase = .stopping
        rollout = nil
        actions.append(.announce(.stopping))
        for index in generations.indices {
            drain(index, into: &actions)
        }
        removeFinishedGenerations(into: &actions)
    }

    /// Forgets draining generations with no worker left; exits when stopping and none is left.
    private mutating func removeFinishedGenerations(into actions: inout [SupervisorAction]) {
        let finished = generations.filter {
            [.leaving, .draining, .rollingBack].contains($0.role) && $0.workers.isEmpty && $0.retired.isEmpty
        }
        if !finished.isEmpty {
            generations.removeAll { generation in finished.contains { $0.number == generation.number } }
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
                actions.append(.retainSockets(for: socketUsers))
            }
        }
        if phase == .stopping && generations.isEmpty {
            phase = .stopped
            actions.append(.exit(code: exitCode, reason: exitReason))
        }
    }

    // MARK: - Rolling reloads

    /// Why a rolling reload cannot go from `old` to `new`, if it cannot: each slot's new
    /// worker takes the old one's place, so both need the same slots and listeners.
    static func rollingObstacle(from old: Configuration, to new: Configuration) -> String? {
        if old.workers.count != new.workers.count {
            return "the worker count changes from \(old.workers.count) to \(new.workers.count)"
        }
        if old.listeners.map({ [$0.name, "\($0.address)", $0.reusePort.rawValue] })
            != new.listeners.map({ [$0.name, "\($0.address)", $0.reusePort.rawValue] }) {
            return "the listeners change"
        }
        return nil
    }

    /// Why a canary of `canary.workers` workers cannot go from `old` to `new`, if it cannot.
    static func canaryObstacle(from old: Configuration, to new: Configuration, _ canary: Canary) -> String? {
        if let obstacle = rollingObstacle(from: old, to: new) { return obstacle }
        if canary.workers >= new.workers.count {
            return "a canary of \(canary.workers) worker(s) needs more than \(canary.workers) slots, the service has \(new.workers.count)"
        }
        return nil
    }

    private mutating func startRollout(_ configuration: Configuration, replacing from: Int, ids: [ReloadRequestID],
                                       canary: Canary? = nil, into actions: inout [SupervisorAction]) {
        let number = nextGeneration
        nextGeneration += 1
        generations.append(Generation(number: number, configuration: configuration))
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
    private mutating func advanceRollout(into actions: inout [SupervisorAction]) {
        guard let rollout, rollout.batchSlots.isEmpty,
              let from = generations.firstIndex(where: { $0.number == rollout.from }),
              let to = generations.firstIndex(where: { $0.number == rollout.to }) else { return }
        if rollout.failure == nil && rollout.replaced.count == rollout.slots {
            finishRollout(rollout, into: &actions)
            return
        }
        if rollout.failure != nil && rollout.replaced.isEmpty {
            finishRollback(rollout, into: &actions)
            return
        }
        guard generations[from].retired.isEmpty, generations[to].retired.isEmpty else { return }
        let slots = rollout.failure == nil
            ? Array((0..<rollout.slots).filter { !rollout.replaced.contains($0) }.prefix(rollout.batch))
            : Array(rollout.replaced.reversed().prefix(rollout.batch))
        startBatch(slots, into: &actions)
        if rollout.failure == nil, case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .startingBatch(generation: rollout.to, slots: slots)))
        }
    }

    /// Starts the workers of a batch: in `to` going forward, in `from` going back.
    private mutating func startBatch(_ slots: [Int], into actions: inout [SupervisorAction]) {
        guard var rollout, let from = generations.firstIndex(where: { $0.number == rollout.from }),
              let starting = generations.firstIndex(where: { $0.number == rollout.starting }) else { return }
        rollout.batchSlots = slots
        self.rollout = rollout
        let configuration = generations[starting].configuration
        for slot in slots {
            // The old generation's slot waiting for its restart is replaced instead.
            if generations[from].restarting.remove(slot) != nil {
                actions.append(.cancelTimer(.restart(generation: rollout.from, slot: slot)))
            }
            var start = 0
            if starting == from {
                start = generations[from].starts[slot, default: 0] + 1
                generations[from].starts[slot] = start
            }
            let worker = WorkerID(generation: generations[starting].number, slot: slot, start: start)
            generations[starting].workers[slot] = Worker(id: worker)
            actions.append(.spawn(worker, configuration))
            actions.append(.startTimer(.readyTimeout(worker), after: configuration.workers.readyTimeout))
        }
    }

    /// A worker of the batch under way is ready: once all are, the batch takes over its
    /// slots and the workers it replaces leave.
    private mutating func batchWorkerReady(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard var rollout, rollout.starting == id.generation, rollout.batchSlots.contains(id.slot),
              let starting = generations.firstIndex(where: { $0.number == rollout.starting }),
              let leaving = generations.firstIndex(where: { $0.number == rollout.leaving }),
              rollout.batchSlots.allSatisfy({ generations[starting].workers[$0]?.state == .ready }) else { return }
        let slots = rollout.batchSlots
        rollout.batchSlots = []
        if let canary = rollout.canary, rollout.failure == nil {
            // The canary's workers take their share beside every old worker.
            rollout.canarySlots = slots
            self.rollout = rollout
            steer(rollout, into: &actions)
            if let hold = canary.hold {
                actions.append(.startTimer(.canaryHold(generation: rollout.to), after: hold))
            }
            let settings = generations[starting].configuration.workers
            if settings.canaryCheck != nil {
                actions.append(.startTimer(.canaryCheck(generation: rollout.to), after: settings.canaryCheckInterval))
            }
            if case .reloading(let ids) = phase {
                actions.append(.reportReload(ids, .canaryServing(generation: rollout.to, slots: slots, weight: canary.weight,
                                                                 hold: canary.hold, after: canary.after)))
            }
            return
        }
        if rollout.failure == nil {
            rollout.replaced += slots
        } else {
            rollout.replaced.removeAll { slots.contains($0) }
        }
        self.rollout = rollout
        steer(rollout, into: &actions)
        for slot in slots {
            depart(leaving, slot: slot, into: &actions)
        }
        if rollout.failure == nil, case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .replacedSlots(generation: rollout.to, slots: slots,
                                                             replaced: rollout.replaced.count, of: rollout.slots)))
        }
        advanceRollout(into: &actions)
    }

    /// Takes the generation's worker out of its slot, whose socket just left the
    /// rotation: it accepts what that socket holds, then drains, as a replaced
    /// generation does. A worker still starting (a restart) drains at once.
    private mutating func depart(_ index: Int, slot: Int, into actions: inout [SupervisorAction]) {
        let generation = generations[index]
        if generations[index].restarting.remove(slot) != nil {
            actions.append(.cancelTimer(.restart(generation: generation.number, slot: slot)))
        }
        guard var worker = generations[index].workers.removeValue(forKey: slot) else { return }
        generations[index].departing.insert(worker.id)
        let settings = generation.configuration.workers
        switch worker.state {
        case .ready:
            if generation.role == .serving {
                actions.append(.cancelTimer(.healthy(worker.id)))
            }
            actions.append(.awaitEmptySlot(worker.id))
            actions.append(.startTimer(.departureGrace(worker.id), after: settings.drainGrace))
        case .starting:
            actions.append(.cancelTimer(.readyTimeout(worker.id)))
            worker.state = .draining
            actions.append(.signal(worker.id, settings.drainSignal))
            actions.append(.startTimer(.retiredDeadline(worker.id), after: settings.drainTimeout))
        case .draining, .killed:
            break
        }
        generations[index].retired[worker.id] = worker
    }

    /// A departing worker's slot is empty, or its grace is over: it gets the drain signal.
    private mutating func drainDeparted(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = generationIndex(id), generations[index].departing.contains(id),
              generations[index].retired[id]?.state == .ready else { return }
        let settings = generations[index].configuration.workers
        generations[index].retired[id]?.state = .draining
        actions.append(.cancelTimer(.departureGrace(id)))
        actions.append(.signal(id, settings.drainSignal))
        actions.append(.startTimer(.retiredDeadline(id), after: settings.drainTimeout))
    }

    /// A new worker failed: the reload is over, and the rollout turns back. The batch
    /// under way stops (its workers were never in rotation).
    private mutating func rolloutFailed(_ reason: String, into actions: inout [SupervisorAction]) {
        guard var rollout, rollout.failure == nil,
              let to = generations.firstIndex(where: { $0.number == rollout.to }) else { return }
        let settings = generations[to].configuration.workers
        let canarySlots = rollout.canarySlots
        if rollout.canary?.hold != nil {
            actions.append(.cancelTimer(.canaryHold(generation: rollout.to)))
        }
        if !canarySlots.isEmpty, settings.canaryCheck != nil {
            actions.append(.cancelTimer(.canaryCheck(generation: rollout.to)))
        }
        rollout.canary = nil
        rollout.canarySlots = []
        for slot in rollout.batchSlots {
            guard var worker = generations[to].workers.removeValue(forKey: slot) else { continue }
            if worker.state == .starting {
                actions.append(.cancelTimer(.readyTimeout(worker.id)))
            }
            if worker.state != .killed {
                worker.state = .draining
                actions.append(.signal(worker.id, settings.drainSignal))
            }
            actions.append(.startTimer(.retiredDeadline(worker.id), after: settings.drainTimeout))
            generations[to].retired[worker.id] = worker
        }
        rollout.batchSlots = []
        rollout.failure = reason
        self.rollout = rollout
        if !canarySlots.isEmpty {
            // The canary leaves the rotation; its workers accept what their sockets hold, then drain.
            steer(rollout, into: &actions)
            for slot in canarySlots {
                depart(to, slot: slot, into: &actions)
            }
        }
        if case .reloading(let ids) = phase {
            let back = rollout.replaced.isEmpty ? ""
                : "; slot\(rollout.replaced.count == 1 ? "" : "s") \(ReloadProgress.list(rollout.replaced)) \(rollout.replaced.count == 1 ? "goes" : "go") back to generation \(rollout.from)"
            actions.append(.reportReload(ids, .rolledBack(generation: rollout.to, reason: reason + back)))
        }
        phase = .running
        advanceRollout(into: &actions)
    }

    /// Every slot is the new generation's: it serves, the old one is done once its last
    /// departing workers have exited.
    private mutating func finishRollout(_ rollout: Rollout, into actions: inout [SupervisorAction]) {
        guard let from = generations.firstIndex(where: { $0.number == rollout.from }),
              let to = generations.firstIndex(where: { $0.number == rollout.to }) else { return }
        self.rollout = nil
        generations[to].role = .serving
        generations[from].role = .draining
        steer(to, into: &actions)
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
        guard let from = generations.firstIndex(where: { $0.number == rollout.from }),
              let to = generations.firstIndex(where: { $0.number == rollout.to }) else { return }
        self.rollout = nil
        generations[to].role = .rollingBack
        steer(from, into: &actions)
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }

    /// The canary worker the health check of generation `number`'s canary runs against
    /// (the first ready one), while that canary holds and has a check.
    private func canaryCheckTarget(_ number: Int) -> (worker: WorkerID, check: CanaryCheck, settings: WorkerConfiguration)? {
        guard let rollout, rollout.to == number, rollout.canary != nil, rollout.failure == nil, !rollout.canarySlots.isEmpty,
              let generation = generations.first(where: { $0.number == number }),
              let check = generation.configuration.workers.canaryCheck,
              let worker = rollout.canarySlots.lazy.compactMap({ generation.workers[$0] }).first(where: { $0.state == .ready })
        else { return nil }
        return (worker.id, check, generation.configuration.workers)
    }

    /// A run of the canary's health check is over: a pass starts the count of failures
    /// again; `canary_check_failures` failures in a row roll the canary back at once.
    /// A result after the hold (promoted or rolled back) changes nothing.
    private mutating func canaryCheckResult(_ number: Int, _ result: CanaryCheckResult, into actions: inout [SupervisorAction]) {
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
    private mutating func promote(into actions: inout [SupervisorAction]) {
        guard var rollout, let canary = rollout.canary, rollout.failure == nil, !rollout.canarySlots.isEmpty,
              let from = generations.firstIndex(where: { $0.number == rollout.from }),
              let to = generations.firstIndex(where: { $0.number == rollout.to }) else { return }
        if canary.hold != nil {
            actions.append(.cancelTimer(.canaryHold(generation: rollout.to)))
        }
        if generations[to].configuration.workers.canaryCheck != nil {
            actions.append(.cancelTimer(.canaryCheck(generation: rollout.to)))
        }
        let slots = rollout.canarySlots
        rollout.canary = nil
        rollout.canarySlots = []
        let configuration = generations[to].configuration
        if case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .promoted(generation: rollout.to, strategy: configuration.workers.strategy)))
        }
        guard configuration.workers.strategy == .rolling else {
            self.rollout = nil
            steer(from, into: &actions)
            for slot in 0..<configuration.workers.count where generations[to].workers[slot] == nil {
                let worker = WorkerID(generation: rollout.to, slot: slot)
                generations[to].workers[slot] = Worker(id: worker)
                actions.append(.spawn(worker, configuration))
                actions.append(.startTimer(.readyTimeout(worker), after: configuration.workers.readyTimeout))
            }
            return
        }
        rollout.replaced = slots
        self.rollout = rollout
        steer(rollout, into: &actions)
        for slot in slots {
            depart(from, slot: slot, into: &actions)
        }
        if case .reloading(let ids) = phase {
            actions.append(.reportReload(ids, .replacedSlots(generation: rollout.to, slots: slots,
                                                             replaced: slots.count, of: rollout.slots)))
        }
        advanceRollout(into: &actions)
    }

    /// Points the rotation at each slot's socket of the generation that owns the slot,
    /// where that generation's worker is ready; false, changing nothing, when none is.
    @discardableResult
    private func steer(_ rollout: Rollout, into actions: inout [SupervisorAction]) -> Bool {
        if let canary = rollout.canary, !rollout.canarySlots.isEmpty {
            return steer(rollout, canary, into: &actions)
        }
        var rotation: [Int: [Int]] = [:]
        for slot in 0..<rollout.slots {
            let owner = rollout.owner(of: slot)
            guard let generation = generations.first(where: { $0.number == owner }),
                  generation.workers[slot]?.state == .ready else { continue }
            rotation[owner, default: []].append(slot)
        }
        guard !rotation.isEmpty else { return false }
        actions.append(.steerAcross(rotation))
        return true
    }

    /// With a canary: every ready old worker's socket, and beside them the ready canary
    /// workers' sockets with as many entries as gives them `weight` percent of the rotation.
    private func steer(_ rollout: Rollout, _ canary: Canary, into actions: inout [SupervisorAction]) -> Bool {
        func ready(_ number: Int, _ slots: some Sequence<Int>) -> [Int] {
            guard let generation = generations.first(where: { $0.number == number }) else { return [] }
            return slots.filter { generation.workers[$0]?.state == .ready }
        }
        let old = ready(rollout.from, 0..<rollout.slots)
        let new = ready(rollout.to, rollout.canarySlots)
        guard !old.isEmpty || !new.isEmpty else { return false }
        guard !old.isEmpty, !new.isEmpty else {
            actions.append(.steerAcross(old.isEmpty ? [rollout.to: new] : [rollout.from: old]))
            return true
        }
        let entries = Rollout.entries(old: old.count, canary: new.count, weight: canary.weight)
        actions.append(.steerAcross([
            rollout.from: old.flatMap { Array(repeating: $0, count: entries.old) },
            rollout.to: new.flatMap { Array(repeating: $0, count: entries.canary) },
        ]))
        return true
    }

    // MARK: - Lookup

    /// The configuration of every alive generation, by number: what their sockets serve.
    private var socketUsers: [Int: Configuration] {
        Dictionary(uniqueKeysWithValues: generations.map { ($0.number, $0.configuration) })
    }

    private func generationIndex(_ id: WorkerID) -> Int? {
        generations.firstIndex { $0.number == id.generation }
    }

    private mutating func updateWorker(_ id: WorkerID, _ change: (inout Worker) -> Void) {
        guard let index = generationIndex(id), var worker = generations[index].workers[id.slot], worker.id == id else {
            return
        }
        change(&worker)
        generations[index].workers[id.slot] = worker
    }
}

/// SIGKILL without importing Glibc into the pure state machine.
private let SIGKILL_: Int32 = 9

extension SupervisorStateMachine {
    /// The workers started by one start or reload.
    public struct Generation: Sendable, Equatable {
        public enum Role: String, Sendable, Equatable {
            /// Workers are starting; the generation does not serve yet.
            case starting
            case serving
            /// Replaced by a newer generation and out of rotation: its workers accept
            /// what its sockets already hold, then drain.
            case leaving
            /// Told to stop: replaced by a newer generation, or Baton is stopping.
            case draining
            /// Failed to start and is being stopped.
            case rollingBack = "rolling-back"
        }

        public let number: Int
        public let configuration: Configuration
        public internal(set) var role: Role = .starting
        /// The live worker of each slot.
        public internal(set) var workers: [Int: Worker] = [:]
        /// Crashes in a row, by slot.
        public internal(set) var crashes: [Int: Int] = [:]
        /// Slots waiting for their restart delay.
        public internal(set) var restarting: Set<Int> = []
        /// Stalled workers taken out of their slot, draining until they exit or their
        /// drain timeout kills them.
        public internal(set) var retired: [WorkerID: Worker] = [:]
        /// Retired workers whose slot a rolling reload handed to another generation.
        public internal(set) var departing: Set<WorkerID> = []
        /// The latest start number of each slot.
        var starts: [Int: Int] = [:]

        public func isCrashLooping(slot: Int) -> Bool {
            crashes[slot, default: 0] >= SupervisorStateMachine.crashLoopThreshold
        }
    }

    public struct Worker: Sendable, Equatable {
        public enum State: String, Sendable, Equatable {
            case starting, ready, draining, killed
        }

        public let id: WorkerID
        public internal(set) var state: State = .starting
        /// The last `STATUS=` the worker sent.
        public internal(set) var status: String?
        /// The worker said `STOPPING=1`.
        public internal(set) var announcedStopping = false
    }
}
