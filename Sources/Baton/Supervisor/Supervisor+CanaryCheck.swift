import Glibc

/// The runs of a canary's health check under way, by pid: the worker each runs
/// against, how long it may take, and whether it was killed for taking longer.
struct CanaryCheckRuns {
    struct Run: Equatable {
        let worker: WorkerID
        let timeout: Duration
        /// The end of its output, for the reason of its failure.
        var output: OutputTail? = nil
        var killed = false

        static func == (left: Run, right: Run) -> Bool {
            left.worker == right.worker && left.timeout == right.timeout && left.output === right.output && left.killed == right.killed
        }
    }

    private var runs: [pid_t: Run] = [:]

    mutating func add(_ pid: pid_t, against worker: WorkerID, timeout: Duration, output: OutputTail? = nil) {
        runs[pid] = Run(worker: worker, timeout: timeout, output: output)
    }

    subscript(pid: pid_t) -> Run? {
        runs[pid]
    }

    /// The run outlived its timeout and is being killed: its exit is a failure.
    mutating func killed(_ pid: pid_t) {
        runs[pid]?.killed = true
    }

    /// Takes a run that exited out of the table; nil if `pid` is no run (any more).
    mutating func reaped(_ pid: pid_t) -> Run? {
        runs.removeValue(forKey: pid)
    }

    /// Takes the runs against `worker`, which is gone, out of the table, for Baton to
    /// kill: their exits are then reaped as orphans'.
    mutating func take(against worker: WorkerID) -> [pid_t] {
        let taken = runs.filter { $0.value.worker == worker }.keys.sorted()
        for pid in taken {
            runs[pid] = nil
        }
        return taken
    }
}

/// Runs of a canary's health check (`canary_check`): one at a time, as the machine
/// asks, killed with their process group at their timeout; each result goes back to it.
extension Supervisor {
    /// One run of the canary's health check: `/bin/sh -c COMMAND` with the variables of
    /// the readiness probe, killed (with its process group) if it still runs after `timeout`.
    func runCanaryCheck(_ check: CanaryCheck, against worker: WorkerID, timeout: Duration) {
        guard let pid = workers.pid(of: worker), let generation = machine.generation(worker.generation) else {
            feed(.canaryCheckResult(generation: worker.generation, .failed("worker \(worker) is gone")))
            return
        }
        // Its output is kept for the reason of a failure; without a pipe, it goes nowhere.
        let tail = try? OutputTail.start(subject: "output of the canary health check against \(worker)")
        let output = tail?.fd ?? open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(output) }
        let request = ReadinessProbe.request(
            check.command, for: worker, pid: pid, settings: generation.configuration.workers,
            environment: launcher.environment, output: output)
        do {
            let run = try ProcessSpawner.spawn(request)
            canaryChecks.add(run, against: worker, timeout: timeout, output: tail?.tail)
            startTimer(.canaryCheckDeadline(run), after: timeout)
        } catch {
            logger.warning("canary health check against worker \(worker) could not start: \(error)", metadata: LogMetadata.worker(worker, pid: pid))
            feed(.canaryCheckResult(generation: worker.generation, .failed("could not start: \(error)")))
        }
    }

    /// A run of the canary's health check still runs at its timeout: it is killed, and fails.
    func canaryCheckOutlivedItsTimeout(_ pid: pid_t) {
        guard let run = canaryChecks[pid] else { return }
        canaryChecks.killed(pid)
        logger.warning("canary health check (pid \(pid)) still runs after \(DurationFormat.string(run.timeout)): sending SIGKILL to its process group")
        if Glibc.kill(-pid, SIGKILL) != 0 { Glibc.kill(pid, SIGKILL) }
    }

    /// A run of the canary's health check exited: its result goes to the machine.
    func canaryCheckExited(_ pid: pid_t, _ run: CanaryCheckRuns.Run, status: Int32) {
        // What the check started and left behind ends with it: it leads a session and
        // group of its own.
        Glibc.kill(-pid, SIGKILL)
        cancelTimer(.canaryCheckDeadline(pid))
        let result: CanaryCheckResult
        if run.killed {
            result = .failed("did not finish within \(DurationFormat.string(run.timeout)) and was killed")
        } else if status == 0 {
            result = .passed
        } else {
            let exit = status < 0 ? WorkerExit.signaled(-status) : .exited(status)
            result = .failed("\(exit)\(WorkerExit.lastOutput(run.output?.lastLines() ?? []))")
        }
        if case .failed(let reason) = result {
            logger.warning("canary health check against worker \(run.worker) failed: \(reason)", metadata: LogMetadata.worker(run.worker, pid: pid))
        }
        feed(.canaryCheckResult(generation: run.worker.generation, result))
    }

    /// The runs against a worker that is gone have nothing left to check: they are
    /// killed with their groups.
    func killCanaryChecks(against worker: WorkerID) {
        for run in canaryChecks.take(against: worker) {
            Glibc.kill(-run, SIGKILL)
            cancelTimer(.canaryCheckDeadline(run))
        }
    }
}
