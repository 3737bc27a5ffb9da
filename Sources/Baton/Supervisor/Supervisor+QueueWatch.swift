import Glibc

/// Watching sockets: a leaving generation's or a departing worker's own sockets until
/// they settle empty, and the serving workers' sockets for stalls.
extension Supervisor {
    /// Feeds ``SupervisorEvent/queuesEmpty(generation:)`` once the leaving generation's
    /// sockets have settled empty; looks again meanwhile.
    func lookAtQueues(of generation: Int) {
        guard machine.generation(generation)?.role == .leaving else {
            settlingGenerations.stop(generation)
            return
        }
        // The workers' connections are looked up only at what would be the last look:
        // that costs far more than the sockets' queues.
        let settled =
            sockets.ownSocketsAreEmpty(generation: generation)
            && (!settlingGenerations.isLastLook(at: generation)
                || haveAnswered(
                    machine.generation(generation)?.workers.values.compactMap { workers.pid(of: $0.id) } ?? [],
                    listeners: sockets.ownStreamSockets(generation: generation)))
        if settlingGenerations.looked(at: generation, empty: settled) {
            feed(.queuesEmpty(generation: generation))
        } else {
            startTimer(.queues(generation: generation), after: EmptyQueueWatch<Int>.interval)
        }
    }

    /// Feeds ``SupervisorEvent/slotQueuesEmpty(_:)`` once the sockets of the slot a
    /// rolling reload took from `worker` have settled empty and it has answered what it
    /// took from them; looks again meanwhile.
    func lookAtSlotQueues(of worker: WorkerID) {
        guard machine.generation(worker.generation)?.retired[worker]?.state == .ready else {
            settlingSlots.stop(worker)
            return
        }
        let settled =
            sockets.ownSocketsAreEmpty(generation: worker.generation, slot: worker.slot)
            && (!settlingSlots.isLastLook(at: worker)
                || haveAnswered(
                    workers.pid(of: worker).map { [$0] } ?? [],
                    listeners: sockets.ownStreamSockets(generation: worker.generation, slot: worker.slot)))
        if settlingSlots.looked(at: worker, empty: settled) {
            feed(.slotQueuesEmpty(worker))
        } else {
            startTimer(.slotQueues(worker), after: EmptyQueueWatch<WorkerID>.interval)
        }
    }

    /// Whether the processes `pids` (leaving workers) have answered every connection they
    /// took from `listeners`, their own TCP sockets, as the kernel shows those
    /// connections. Where it cannot (no sock_diag, another user's `/proc`), from whether
    /// every thread of theirs waits, which a worker busy with keep-alive clients never does.
    func haveAnswered(_ pids: [pid_t], listeners: [Int32]) -> Bool {
        // Workers that hold no socket but the listeners Baton gave them hold no
        // connection, and owe nothing on these listeners.
        if !listeners.isEmpty, UnansweredConnections.noneHeld(by: pids) { return true }
        let unanswered = listeners.isEmpty ? nil : UnansweredConnections(listeners: listeners)
        if unanswered?.isEmpty == true { return true }
        return pids.allSatisfy { pid in
            if let held = unanswered?.areHeld(by: pid) { return !held }
            if !listeners.isEmpty, !connectionsUnreadable {
                connectionsUnreadable = true
                logger.warning(
                    "the connections of worker pid \(pid) cannot be read (sock_diag or /proc/\(pid)/fd): a leaving worker gets its drain signal only once none of its threads runs, which under load waits for drain_grace"
                )
            }
            return ProcessActivity.isWaiting(pid)
        }
    }

    /// Says so when a leaving generation's (or departing worker's) `drain_grace` ends
    /// before its sockets settled: it gets its drain signal with connections queued or
    /// unanswered, which a server whose shutdown drops them loses.
    func sayIfGraceEnded(_ timer: SupervisorTimer) {
        switch timer {
        case .drainGrace(let generation) where settlingGenerations.isWatching(generation):
            logger.notice(
                "generation \(generation): drain_grace ended before its sockets were empty with every connection answered; it drains now"
            )
        case .departureGrace(let worker) where settlingSlots.isWatching(worker):
            logger.notice(
                "worker \(worker): drain_grace ended before its slot's sockets were empty with every connection answered; it drains now")
        default:
            break
        }
    }

    /// Looks for stalls while the serving generation has a stall timeout, else never.
    func watchForStalls() {
        guard let serving = machine.serving, let timeout = serving.configuration.workers.stallTimeout else {
            cancelTimer(.stalls)
            stalls = StallWatch()
            return
        }
        // Stalls are seen through the steering program's counters: without a steered
        // listener the timeout can do nothing, which is said once per generation.
        if !serving.configuration.listeners.contains(where: sockets.isSteered), stallsUnwatchable != serving.number {
            stallsUnwatchable = serving.number
            logger.warning(
                "stall_timeout = \(DurationFormat.string(timeout)) does nothing for generation \(serving.number): no listener is steered (steering is off, or every listener is shared or a unix socket), and stalls are seen only through the steering program's counters (Docs/steering.md)"
            )
        }
        if !timers.isRunning(.stalls) {
            startTimer(.stalls, after: StallWatch.interval(for: timeout))
        }
    }

    /// Feeds ``SupervisorEvent/workerStalled(_:)`` for each ready serving worker whose
    /// steered sockets have held connections without it accepting one for the timeout.
    func lookForStalls() {
        guard let serving = machine.serving, let timeout = serving.configuration.workers.stallTimeout else { return }
        let now = Clock.monotonic()
        var stalled: [WorkerID] = []
        for worker in serving.workers.values.sorted(by: { $0.id < $1.id }) where worker.state == .ready {
            let counts = sockets.acceptCounts(generation: serving.number, slot: worker.id.slot, configuration: serving.configuration)
            for count in counts
            where stalls.look(
                at: .init(worker: worker.id, listener: count.listener), steered: count.steered,
                queued: count.queued, now: now, timeout: timeout)
            {
                stalled.append(worker.id)
                break
            }
        }
        stalls.keep(only: Set(serving.workers.values.map(\.id)))
        for worker in stalled {
            feed(.workerStalled(worker))
        }
        watchForStalls()
    }

    /// Feeds ``SupervisorEvent/queuesEmpty(generation:)`` once the generation's own
    /// sockets have settled empty (at once if it has none).
    func awaitEmptyQueues(_ generation: Int) {
        guard sockets.hasOwnSockets(generation: generation) else {
            feed(.queuesEmpty(generation: generation))
            return
        }
        settlingGenerations.start(generation)
        startTimer(.queues(generation: generation), after: EmptyQueueWatch<Int>.interval)
    }

    /// Feeds ``SupervisorEvent/slotQueuesEmpty(_:)`` once the worker's slot's own
    /// sockets have settled empty and it waits (at once if its generation has none).
    func awaitEmptySlot(_ worker: WorkerID) {
        guard sockets.hasOwnSockets(generation: worker.generation) else {
            feed(.slotQueuesEmpty(worker))
            return
        }
        settlingSlots.start(worker)
        startTimer(.slotQueues(worker), after: EmptyQueueWatch<WorkerID>.interval)
    }
}
