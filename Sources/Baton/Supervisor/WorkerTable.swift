import Glibc

/// The processes Baton started and has not reaped yet: every worker with its pid, its
/// notify socket and when it started, and the readiness probes running for workers.
///
/// One table, so that a worker enters and leaves it in one step and a reaped pid is
/// found to be a worker, a probe or neither (an orphan Baton reaps as a subreaper).
struct WorkerTable {
    struct Entry {
        var pid: pid_t
        /// Seconds on the monotonic clock at its start, or when this Baton took it over.
        var started: Double
        /// The worker's own `NOTIFY_SOCKET`; nil only where nothing listens for it.
        var notifySocket: NotifySocket?
        /// The relay of its standard error, when Baton reads it (`output = "prefix"`).
        var standardError: OutputRelay? = nil
    }

    /// What a reaped pid was.
    enum Reaped {
        /// A worker, now out of the table with everything it held.
        case worker(WorkerID, Entry)
        /// A readiness probe run for this worker.
        case probe(WorkerID)
        /// A run of the canary's health check, against this worker.
        case canaryCheck(WorkerID)
        case unknown
    }

    private var entries: [WorkerID: Entry] = [:]
    private var workerByPID: [pid_t: WorkerID] = [:]
    private var probeByPID: [pid_t: WorkerID] = [:]
    private var canaryCheckByPID: [pid_t: WorkerID] = [:]

    mutating func add(_ worker: WorkerID, _ entry: Entry) {
        entries[worker] = entry
        workerByPID[entry.pid] = worker
    }

    mutating func addProbe(_ pid: pid_t, for worker: WorkerID) {
        probeByPID[pid] = worker
    }

    mutating func addCanaryCheck(_ pid: pid_t, for worker: WorkerID) {
        canaryCheckByPID[pid] = worker
    }

    /// Takes the readiness probes and canary health checks still running for `worker`
    /// out of the table, for Baton to kill: their exits are then reaped as orphans'.
    mutating func takeProbes(of worker: WorkerID) -> [pid_t] {
        let probes = Array(probeByPID.filter { $0.value == worker }.keys) + canaryCheckByPID.filter { $0.value == worker }.keys
        for pid in probes {
            probeByPID[pid] = nil
            canaryCheckByPID[pid] = nil
        }
        return probes
    }

    /// Whether `pid` is a run of the canary's health check not reaped yet.
    func isCanaryCheck(_ pid: pid_t) -> Bool {
        canaryCheckByPID[pid] != nil
    }

    subscript(worker: WorkerID) -> Entry? {
        entries[worker]
    }

    func pid(of worker: WorkerID) -> pid_t? {
        entries[worker]?.pid
    }

    /// Takes a pid that exited out of the table.
    mutating func reaped(_ pid: pid_t) -> Reaped {
        if let worker = workerByPID.removeValue(forKey: pid), let entry = entries.removeValue(forKey: worker) {
            return .worker(worker, entry)
        }
        if let worker = probeByPID.removeValue(forKey: pid) {
            return .probe(worker)
        }
        if let worker = canaryCheckByPID.removeValue(forKey: pid) {
            return .canaryCheck(worker)
        }
        return .unknown
    }
}
