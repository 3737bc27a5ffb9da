/// How workers go: a replaced generation leaves the rotation, its sockets settle empty
/// (or its drain grace ends), then it gets the drain signal and, at its drain timeout,
/// SIGKILL. A single worker a rolling reload or a canary replaces departs the same way,
/// its slot's sockets alone.
extension SupervisorStateMachine {
    /// Tells every live worker of the generation to drain, and arms its deadline.
    mutating func drain(_ index: Int, role: Generation.Role = .draining, into actions: inout [SupervisorAction]) {
        let generation = table[index]
        table[index].role = role
        if generation.role == .leaving {
            actions.append(.cancelTimer(.drainGrace(generation: generation.number)))
        }
        actions += table.cancelRestarts(at: index)
        for (slot, worker) in generation.workers.sorted(by: { $0.key < $1.key }) {
            guard worker.state == .starting || worker.state == .ready else { continue }
            actions += GenerationTable.cancelTimers(of: worker)
            table[index].workers[slot]?.state = .draining
            actions.append(.signal(worker.id, generation.configuration.workers.drainSignal))
        }
        // Workers a rolling reload took out of their slots that still accept what their
        // sockets hold.
        for (id, worker) in generation.retired.sorted(by: { $0.key < $1.key }) where worker.state == .ready {
            table[index].retired[id]?.state = .draining
            actions.append(.cancelTimer(.departureGrace(id)))
            actions.append(.signal(id, generation.configuration.workers.drainSignal))
        }
        if generation.role != .draining && generation.role != .rollingBack {
            actions.append(
                .startTimer(
                    .drainDeadline(generation: generation.number),
                    after: generation.configuration.workers.drainTimeout))
        }
    }

    /// Takes a replaced generation out of rotation; its workers keep accepting what its
    /// sockets already hold, and get the drain signal once those are empty.
    mutating func leave(_ index: Int, into actions: inout [SupervisorAction]) {
        let generation = table[index]
        table[index].role = .leaving
        actions += table.cancelRestarts(at: index)
        for worker in generation.workers.values.sorted(by: { $0.id < $1.id }) {
            actions += GenerationTable.cancelTimers(of: worker)
        }
        actions.append(.awaitEmptyQueues(generation: generation.number))
        actions.append(
            .startTimer(
                .drainGrace(generation: generation.number),
                after: generation.configuration.workers.drainGrace))
    }

    mutating func kill(_ index: Int, into actions: inout [SupervisorAction]) {
        for (slot, worker) in table[index].workers.sorted(by: { $0.key < $1.key }) where worker.state != .killed {
            table[index].workers[slot]?.state = .killed
            actions.append(.signal(worker.id, SIGKILL_))
        }
        for (id, worker) in table[index].retired.sorted(by: { $0.key < $1.key }) where worker.state != .killed {
            table[index].retired[id]?.state = .killed
            actions.append(.cancelTimer(.retiredDeadline(id)))
            actions.append(.signal(id, SIGKILL_))
        }
    }

    /// The new generation failed to start: it stops, the serving one carries on.
    mutating func rollBack(_ index: Int, reason: String, into actions: inout [SupervisorAction]) {
        guard case .reloading(let ids) = phase else { return }
        drain(index, role: .rollingBack, into: &actions)
        phase = .running
        actions.append(.reportReload(ids, .rolledBack(generation: table[index].number, reason: reason)))
    }

    /// Takes the generation's worker out of its slot, whose socket just left the
    /// rotation: it accepts what that socket holds, then drains, as a replaced
    /// generation does. A worker still starting (a restart) drains at once.
    mutating func depart(_ index: Int, slot: Int, into actions: inout [SupervisorAction]) {
        actions += table.cancelRestart(slot: slot, at: index)
        guard let worker = table.retire(slot: slot, at: index, departing: true) else { return }
        let settings = table[index].configuration.workers
        switch worker.state {
        case .ready:
            if table[index].role == .serving {
                actions.append(.cancelTimer(.healthy(worker.id)))
            }
            actions.append(.awaitEmptySlot(worker.id))
            actions.append(.startTimer(.departureGrace(worker.id), after: settings.drainGrace))
        case .starting:
            actions.append(.cancelTimer(.readyTimeout(worker.id)))
            signalDrain(retired: worker.id, at: index, into: &actions)
        case .draining, .killed:
            break
        }
    }

    /// A departing worker's slot is empty, or its grace is over: it gets the drain signal.
    mutating func drainDeparted(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = table.index(of: id), table[index].departing.contains(id),
            table[index].retired[id]?.state == .ready
        else { return }
        actions.append(.cancelTimer(.departureGrace(id)))
        signalDrain(retired: id, at: index, into: &actions)
    }

    /// A worker out of its slot gets the drain signal, and SIGKILL if it is still alive
    /// at its drain timeout.
    mutating func signalDrain(retired id: WorkerID, at index: Int, into actions: inout [SupervisorAction]) {
        let settings = table[index].configuration.workers
        table[index].retired[id]?.state = .draining
        actions.append(.signal(id, settings.drainSignal))
        actions.append(.startTimer(.retiredDeadline(id), after: settings.drainTimeout))
    }
}
