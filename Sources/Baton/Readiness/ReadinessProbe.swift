import Glibc

/// `readiness = "exec:COMMAND"`: a shell command Baton runs again and again until it
/// exits 0, which makes the worker ready. It is told which worker it checks.
enum ReadinessProbe {
    /// The first run, this long after the worker started.
    static let firstRun: Duration = .milliseconds(100)
    /// The next run, this long after a run that failed.
    static let retry: Duration = .milliseconds(250)
    /// The next try, this long after the probe could not even be started.
    static let retryAfterSpawnFailure: Duration = .seconds(1)

    /// The probe process for the worker `worker` with pid `pid`; its output is discarded
    /// into `output` (`/dev/null`).
    static func request(
        _ command: String, for worker: WorkerID, pid: pid_t, settings: WorkerConfiguration,
        environment: [String: String], output: Int32
    ) -> ProcessSpawner.Request {
        var environment = environment
        environment[WorkerContract.workerProcessID] = "\(pid)"
        environment[WorkerContract.generation] = "\(worker.generation)"
        environment[WorkerContract.slot] = "\(worker.slot)"
        return ProcessSpawner.Request(
            command: ["/bin/sh", "-c", command], environment: environment,
            directory: settings.directory, stdout: output, stderr: output,
            credentials: settings.credentials, noNewPrivileges: settings.noNewPrivileges)
    }
}
