import Glibc

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
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let request = ReadinessProbe.request(
            check.command, for: worker, pid: pid, settings: generation.configuration.workers,
            environment: launcher.environment, output: devNull)
        do {
            let run = try ProcessSpawner.spawn(request)
            workers.addCanaryCheck(run, for: worker)
            canaryChecks[run] = (timeout, false)
            startTimer(.canaryCheckDeadline(run), after: timeout)
        } catch {
            logger.warning("canary health check against worker \(worker) could not start: \(error)", metadata: LogMetadata.worker(worker, pid: pid))
            feed(.canaryCheckResult(generation: worker.generation, .failed("could not start: \(error)")))
        }
    }

    /// A run of the canary's health check still runs at its timeout: it is killed, and fails.
    func canaryCheckOutlivedItsTimeout(_ pid: pid_t) {
        guard workers.isCanaryCheck(pid), let run = canaryChecks[pid] else { return }
        canaryChecks[pid]?.killed = true
        logger.warning("canary health check (pid \(pid)) still runs after \(DurationFormat.string(run.timeout)): sending SIGKILL to its process group")
        if Glibc.kill(-pid, SIGKILL) != 0 { Glibc.kill(pid, SIGKILL) }
    }

    /// A run of the canary's health check exited: its result goes to the machine.
    func canaryCheckExited(_ pid: pid_t, against worker: WorkerID, status: Int32) {
        // What the check started and left behind ends with it: it leads a session and
        // group of its own.
        Glibc.kill(-pid, SIGKILL)
        cancelTimer(.canaryCheckDeadline(pid))
        let run = canaryChecks.removeValue(forKey: pid)
        let result: CanaryCheckResult
        if let run, run.killed {
            result = .failed("did not finish within \(DurationFormat.string(run.timeout)) and was killed")
        } else if status == 0 {
            result = .passed
        } else {
            result = .failed("\(status < 0 ? WorkerExit.signaled(-status) : .exited(status))")
        }
        if case .failed(let reason) = result {
            logger.warning("canary health check against worker \(worker) failed: \(reason)", metadata: LogMetadata.worker(worker, pid: pid))
        }
        feed(.canaryCheckResult(generation: worker.generation, result))
    }
}
