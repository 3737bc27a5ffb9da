import Glibc
import NIOCore

/// A worker's process group: signals reach the whole group, and what outlives the
/// worker drains and is killed at its drain timeout; Baton exits only once none lingers.
extension Supervisor {
    /// The worker's process group (the worker leads it), so that a wrapper that does not
    /// `exec` passes the signal on to its server; the worker alone when it left its group.
    func signalGroup(of pid: pid_t, _ signal: Int32) {
        if getpgid(pid) != pid || Glibc.kill(-pid, signal) != 0 {
            Glibc.kill(pid, signal)
        }
        if signal != SIGKILL { drainedGroups.insert(pid) }
    }

    /// After a worker exited: what is left of its process group drains too, and gets
    /// SIGKILL at the end of the drain timeout.
    func lingerIfNeeded(group: pid_t, of worker: WorkerID) {
        guard Glibc.kill(-group, 0) == 0 else {
            drainedGroups.remove(group)
            return
        }
        let settings = configuration(of: worker.generation)?.workers ?? WorkerConfiguration(command: [])
        if !drainedGroups.contains(group) {
            Glibc.kill(-group, settings.drainSignal)
        }
        logger.info("worker \(worker) exited, other processes of its group \(group) drain (at most \(DurationFormat.string(settings.drainTimeout)))")
        lingering[group] = worker
        startTimer(.lingering(group: group), after: settings.drainTimeout)
    }

    /// Exits once the machine is done and no worker's group lingers.
    func exitIfDone() {
        guard let code = pendingExit else { return }
        guard lingering.isEmpty else {
            logger.info("waiting for the processes of \(lingering.count) exited worker(s)' groups")
            return
        }
        pendingExit = nil
        let waiters = stopWaiters
        stopWaiters = []
        let reply = ControlReply(ok: true, final: true, message: "every worker has exited; baton \(getpid()) exits with status \(code)")
        // Baton exits once the waiters have their answer, or gave up reading it.
        EventLoopFuture.andAllComplete(waiters.map { $0.finish(reply) }, on: eventLoop).whenComplete { [self] _ in
            finished?.succeed(.exit(code))
        }
    }

    /// The group of an exited worker still has members at the end of its drain timeout.
    func lingeringGroupOutlivedItsDrain(_ group: pid_t) {
        guard let worker = lingering[group] else { return }
        logger.warning("processes of worker \(worker)'s group \(group) outlived its drain timeout: sending SIGKILL to the group")
        Glibc.kill(-group, SIGKILL)
        // Done with it: a zombie whose parent never reaps it would keep the
        // group alive, and Baton from exiting.
        lingering[group] = nil
        drainedGroups.remove(group)
        exitIfDone()
    }

    /// An orphan was reaped: the groups it was the last member of are done with.
    func forgetEmptiedGroups() {
        for group in lingering.keys where Glibc.kill(-group, 0) != 0 {
            lingering[group] = nil
            drainedGroups.remove(group)
            cancelTimer(.lingering(group: group))
        }
        exitIfDone()
    }

    /// The machine is done: Baton exits once no worker's group lingers.
    func exit(_ code: Int32, reason: String?) {
        if let reason {
            logger.error("exiting: \(reason)")
        } else {
            logger.info("every worker has exited; exiting")
        }
        pendingExit = code
        exitIfDone()
    }
}
