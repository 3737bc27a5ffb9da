/// One worker process: the slot it fills in its generation, and which start of that
/// slot it is (0 for the first, one more for each restart).
struct WorkerID: Hashable, Sendable, Comparable, CustomStringConvertible {
    var generation: Int
    var slot: Int
    var start: Int

    init(generation: Int, slot: Int, start: Int = 0) {
        self.generation = generation
        self.slot = slot
        self.start = start
    }

    static func < (lhs: WorkerID, rhs: WorkerID) -> Bool {
        (lhs.generation, lhs.slot, lhs.start) < (rhs.generation, rhs.slot, rhs.start)
    }

    var description: String {
        start == 0 ? "g\(generation)/s\(slot)" : "g\(generation)/s\(slot)#\(start)"
    }
}

/// How a worker ended.
enum WorkerExit: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// fork, or the child's preparations or execve, failed.
    case failedToStart(String)

    var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "killed by \(SignalName.name(signal))"
        case .failedToStart(let reason): "could not start: \(reason)"
        }
    }

    /// What ends a reason about the exit of a worker whose last lines on standard error
    /// were `lastWords`: nothing when there were none.
    static func lastOutput(_ lastWords: [String]) -> String {
        lastWords.isEmpty ? "" : "; its last output: " + lastWords.joined(separator: " | ")
    }
}

/// Identifies one `reload` request, so that its asker hears how it went.
typealias ReloadRequestID = Int

/// Timers the state machine asks for; each comes back as ``SupervisorEvent/timerFired(_:)``.
enum SupervisorTimer: Hashable, Sendable {
    /// The worker must be ready by then.
    case readyTimeout(WorkerID)
    /// The worker has served long enough for its slot's crash count to be forgotten.
    case healthy(WorkerID)
    /// Time to start the slot again after a crash.
    case restart(generation: Int, slot: Int)
    /// Workers of the generation still alive then are killed.
    case drainDeadline(generation: Int)
    /// A generation out of rotation gets its drain signal then, even if its sockets
    /// still hold connections.
    case drainGrace(generation: Int)
    /// A retired (stalled) worker still alive then is killed.
    case retiredDeadline(WorkerID)
    /// A worker whose slot a rolling reload handed to another generation gets its drain
    /// signal then, even if its slot's sockets still hold connections.
    case departureGrace(WorkerID)
    /// The canary of generation `generation` has held for its `hold`.
    case canaryHold(generation: Int)
    /// Time to run the health check of generation `generation`'s canary again.
    case canaryCheck(generation: Int)
}

/// How one run of a canary's health check (`canary_check`) went.
enum CanaryCheckResult: Sendable, Equatable {
    case passed
    /// Why it failed, such as "exited with status 1".
    case failed(String)
}

/// Everything that can happen to the supervisor.
enum SupervisorEvent: Sendable, Equatable {
    /// The configuration was read at start-up: start the first generation.
    case start(Configuration)
    /// Baton replaced its own binary (`batonctl upgrade`): `workers`, all ready, keep
    /// serving as generation `generation` of `configuration`.
    case resume(Configuration, generation: Int, workers: [WorkerID])
    /// A reload, with what it was asked for beyond the configuration file.
    case reloadRequested(ReloadRequestID, ReloadOptions = .configured)
    /// The configuration re-read for a reload is valid, with the reload's strategy and
    /// batch applied, and its new sockets are open; `canary`: the reload starts as one.
    case configurationLoaded(Configuration, canary: Canary? = nil)
    case configurationRejected(String)
    /// `batonctl promote`: the canary that holds becomes the whole new generation.
    case promoteRequested
    /// `batonctl rollback`: the canary that holds drains, the old generation serves alone.
    case rollbackRequested
    /// A run of the health check that ``SupervisorAction/runCanaryCheck(_:_:timeout:)``
    /// asked for, against generation `generation`'s canary, is over.
    case canaryCheckResult(generation: Int, CanaryCheckResult)
    case workerReady(WorkerID)
    case workerStatus(WorkerID, String)
    case workerStopping(WorkerID)
    /// The worker exited; `lastWords` are the last lines it wrote on standard error, when
    /// Baton read them (`output = "prefix"`).
    case workerExited(WorkerID, WorkerExit, lastWords: [String] = [])
    /// A serving worker's sockets held connections and it accepted none for its
    /// generation's stall timeout.
    case workerStalled(WorkerID)
    case timerFired(SupervisorTimer)
    /// The sockets of a generation out of rotation hold no connection any more.
    case queuesEmpty(generation: Int)
    /// The sockets of the slot whose worker a rolling reload took out of rotation hold
    /// no connection any more, and the worker waits for more.
    case slotQueuesEmpty(WorkerID)
    /// `SIGTERM`, `SIGINT` or `batonctl stop`; the second one kills.
    case stopRequested
}
