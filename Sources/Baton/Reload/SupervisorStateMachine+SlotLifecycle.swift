/// A slot's life: its worker gets ready or misses its ready timeout, exits, crashes
/// and restarts after a delay that doubles with each crash in a row (forgotten once a
/// restarted worker has served for ``SupervisorStateMachine/healthyAfter``), or stalls.
extension SupervisorStateMachine {
    mutating func workerReady(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = table.index(of: id), let worker = table.worker(id), worker.state == .starting else {
            return  // Late: the worker already timed out, is draining, or is gone.
        }
        table[index].workers[id.slot]?.state = .ready
        actions.append(.cancelTimer(.readyTimeout(id)))
        let generation = table[index]
        switch generation.role {
        case .serving:
            actions.append(.startTimer(.healthy(id), after: Self.healthyAfter))
            steer(into: &actions)
            feedRollout({ $0.workerReady(id, $1) }, into: &actions)
        case .starting:
            let ready = generation.workers.values.filter { $0.state == .ready }.count
            // A canary's generation starts only the canary's workers.
            let total =
                rollout?.to == generation.number
                ? rollout?.canary?.asked.workers ?? generation.configuration.workers.count
                : generation.configuration.workers.count
            if case .reloading(let ids) = phase {
                actions.append(.reportReload(ids, .workerReady(id, ready: ready, of: total)))
            }
            if rollout?.to == generation.number {
                feedRollout({ $0.workerReady(id, $1) }, into: &actions)
            } else if ready == total {
                takeOver(index, into: &actions)
            }
        case .leaving, .draining, .rollingBack:
            break
        }
    }

    mutating func readyTimeout(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = table.index(of: id), let worker = table.worker(id), worker.state == .starting else { return }
        let timeout = DurationFormat.string(table[index].configuration.workers.readyTimeout)
        let reason = "worker \(id) was not ready within \(timeout)"
        if rollout?.to == id.generation {
            feedRollout({ $0.fail("slot \(id.slot): \(reason)", $1) }, into: &actions)
            return
        }
        switch table[index].role {
        case .starting where phase == .starting:
            fail(reason, into: &actions)
        case .starting:
            rollBack(index, reason: reason, into: &actions)
        case .serving:
            // A restarted worker that never got ready: kill it; its exit restarts the slot.
            table[index].workers[id.slot]?.state = .killed
            actions.append(.signal(id, SIGKILL_))
        case .leaving, .draining, .rollingBack:
            break
        }
    }

    mutating func workerExited(_ id: WorkerID, _ exit: WorkerExit, lastWords: [String] = [], into actions: inout [SupervisorAction]) {
        if let index = table.index(of: id), table[index].retired[id] != nil {
            retiredWorkerExited(id, exit, at: index, into: &actions)
            return
        }
        guard let index = table.index(of: id), let worker = table.worker(id) else { return }
        table[index].workers[id.slot] = nil
        actions.append(.cancelTimer(.readyTimeout(id)))
        if worker.state == .ready {
            actions.append(.cancelTimer(.healthy(id)))
        }
        let generation = table[index]
        if let rollout, rollout.to == generation.number {
            rolloutWorkerExited(worker, exit, lastWords: lastWords, into: &actions)
            return
        }
        switch generation.role {
        case .starting where phase == .starting:
            actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
            fail("worker \(id) \(exit) before it was ready\(WorkerExit.lastOutput(lastWords))", into: &actions)
        case .starting:
            actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
            rollBack(index, reason: "worker \(id) \(exit) before it was ready\(WorkerExit.lastOutput(lastWords))", into: &actions)
        case .serving:
            if worker.state == .ready, steer(into: &actions) {
                actions.append(.evacuate(generation: generation.number, slot: id.slot))
            }
            table.recordExit(of: id.slot, at: index, "\(exit)\(WorkerExit.lastOutput(lastWords))")
            let backoff = crashed(slot: id.slot, at: index)
            actions.append(.announce(.workerExited(id, exit, restartAfter: backoff.delay)))
            actions.append(backoff.restart)
            if worker.state != .ready {
                feedRollout({ rollout, _ in rollout.takeBackUnready(slot: id.slot) }, into: &actions)
            }
        case .leaving, .draining:
            // Out of rotation already: what its sockets still hold goes to the serving
            // slots. No worker of this generation comes after it.
            if phase != .stopping {
                actions.append(.evacuate(generation: generation.number, slot: id.slot, forNextWorker: false))
            }
        case .rollingBack:
            break
        }
        removeFinishedGenerations(into: &actions)
        startPendingReload(into: &actions)
    }

    /// A worker taken out of its slot (stalled, or replaced by a rolling reload) exited.
    private mutating func retiredWorkerExited(
        _ id: WorkerID, _ exit: WorkerExit, at index: Int,
        into actions: inout [SupervisorAction]
    ) {
        guard let retired = table[index].retired.removeValue(forKey: id) else { return }
        if table[index].departing.remove(id) != nil {
            if retired.state == .ready {
                actions.append(.cancelTimer(.departureGrace(id)))
            } else {
                actions.append(.cancelTimer(.retiredDeadline(id)))
            }
            // What reached its slot's sockets after it stopped accepting moves to the
            // rotation. While the rolling reload goes on, its generation still serves,
            // and a rollback gives the slot back to it, on this socket.
            if phase != .stopping {
                actions.append(
                    .evacuate(generation: id.generation, slot: id.slot, forNextWorker: table[index].role == .serving))
            }
        } else {
            actions.append(.cancelTimer(.retiredDeadline(id)))
        }
        actions.append(.announce(.workerExited(id, exit, restartAfter: nil)))
        removeFinishedGenerations(into: &actions)
        advanceRollout(into: &actions)
        startPendingReload(into: &actions)
    }

    /// A stalled worker of the serving generation is retired: it leaves its slot and the
    /// rotation (unless it is the last ready one: the rotation is never emptied), what its
    /// sockets hold moves to the slots in rotation, and it gets the drain signal, so that
    /// it answers what it holds if it wakes up, and is killed at its drain timeout if it
    /// does not. Its slot restarts as after a crash, with the same growing delay, so a
    /// slot that stalls again and again cannot pile up retired workers.
    mutating func workerStalled(_ id: WorkerID, into actions: inout [SupervisorAction]) {
        guard let index = table.index(of: id), table[index].role == .serving,
            let worker = table.worker(id), worker.state == .ready,
            let timeout = table[index].configuration.workers.stallTimeout
        else { return }
        _ = table.retire(slot: id.slot, at: index)
        actions.append(.cancelTimer(.healthy(id)))
        if steer(into: &actions) {
            actions.append(.evacuate(generation: id.generation, slot: id.slot))
        }
        let backoff = crashed(slot: id.slot, at: index)
        actions.append(.announce(.workerStalled(id, after: timeout, restartAfter: backoff.delay)))
        signalDrain(retired: id, at: index, into: &actions)
        actions.append(backoff.restart)
    }

    /// The slot's restart delay is over: its next worker starts, if its generation still serves.
    mutating func restart(_ number: Int, slot: Int, into actions: inout [SupervisorAction]) {
        guard phase != .stopping, let index = table.index(of: number), table[index].role == .serving,
            table[index].restarting.remove(slot) != nil
        else { return }
        actions += table.restartWorker(slot: slot, at: index)
    }

    /// The slot's worker crashed (or stalled): one more crash in a row, and the slot
    /// restarts after the delay that many crashes earn.
    private mutating func crashed(slot: Int, at index: Int) -> (delay: Duration, restart: SupervisorAction) {
        let delay = Self.restartDelay(after: table.countCrash(slot: slot, at: index), table[index].configuration.workers)
        return (delay, table.scheduleRestart(slot: slot, at: index, after: delay))
    }

    /// The restart delay after `crashes` crashes in a row: `restart_delay`, doubled for
    /// each crash after the first, at most `restart_delay_max`.
    static func restartDelay(after crashes: Int, _ workers: WorkerConfiguration) -> Duration {
        var delay = workers.restartDelay
        for _ in 1..<max(crashes, 1) where delay < workers.restartDelayMax {
            delay *= 2
        }
        return min(delay, workers.restartDelayMax)
    }
}
