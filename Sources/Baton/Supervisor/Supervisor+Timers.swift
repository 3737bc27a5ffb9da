import Glibc

/// The shell's timers: the machine's, and its own looks at processes and sockets.
/// Each fires as an input on the event loop; a cancelled or restarted one never does.
extension Supervisor {
    enum TimerKey: Hashable, Sendable {
        case machine(SupervisorTimer)
        /// `readiness = "delay:…"`: the worker counts as ready then.
        case readinessDelay(WorkerID)
        /// `readiness = "exec:…"`: time to run the probe (again).
        case probe(WorkerID)
        /// Time to look whether a leaving generation's sockets are empty.
        case queues(generation: Int)
        /// Time to look whether the slot of a worker a rolling reload replaced is empty.
        case slotQueues(WorkerID)
        /// `stall_timeout`: time to look whether a serving worker accepts.
        case stalls
        /// A worker that exited left processes in its group: time to kill them.
        case lingering(group: pid_t)
        /// The run of the canary's health check with this pid is still running: kill it.
        case canaryCheckDeadline(pid_t)
        /// The `stop_delay` is over: the stop begins.
        case stopDelay
    }

    func startTimer(_ key: TimerKey, after delay: Duration) {
        timers.start(key, after: delay, on: eventLoop) { [self] key, token in handle(.timer(key, token: token)) }
    }

    func cancelTimer(_ key: TimerKey) {
        timers.cancel(key)
    }

    func timerFired(_ key: TimerKey) {
        switch key {
        case .machine(let timer):
            sayIfGraceEnded(timer)
            feed(.timerFired(timer))
        case .readinessDelay(let worker):
            if workers[worker] != nil { feed(.workerReady(worker)) }
        case .probe(let worker):
            runProbe(for: worker)
        case .queues(let generation):
            lookAtQueues(of: generation)
        case .slotQueues(let worker):
            lookAtSlotQueues(of: worker)
        case .stalls:
            lookForStalls()
        case .lingering(let group):
            lingeringGroupOutlivedItsDrain(group)
        case .canaryCheckDeadline(let pid):
            canaryCheckOutlivedItsTimeout(pid)
        case .stopDelay:
            feed(.stopRequested)
        }
    }
}
