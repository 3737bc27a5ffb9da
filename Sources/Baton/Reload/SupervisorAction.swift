/// What the state machine asks its shell to do.
enum SupervisorAction: Sendable, Equatable {
    /// Re-read the configuration, apply the reload's options to it, open listeners that
    /// are new in it, and answer with ``SupervisorEvent/configurationLoaded(_:canary:)``
    /// (with the options' canary) or ``SupervisorEvent/configurationRejected(_:)``.
    case loadConfiguration(ReloadOptions)
    /// Start a worker with this configuration; a failure comes back as
    /// ``SupervisorEvent/workerExited(_:_:)`` with ``WorkerExit/failedToStart(_:)``.
    case spawn(WorkerID, Configuration)
    case signal(WorkerID, Int32)
    case startTimer(SupervisorTimer, after: Duration)
    case cancelTimer(SupervisorTimer)
    /// Tell the askers of these reloads how their reload is going.
    case reportReload([ReloadRequestID], ReloadProgress)
    /// Something an operator (and systemd) should hear about.
    case announce(Announcement)
    /// Close every socket that none of these generations (by number) uses.
    case retainSockets(for: [Int: Configuration])
    /// From now on, new connections to every steered listener go to exactly these
    /// sockets: by generation number, the slots whose socket of that generation takes
    /// them, a slot listed `n` times taking `n` shares (``Rotation``). Never empty.
    case steer([Int: [Int]])
    /// The slot's worker is gone: move what its own sockets hold to the sockets in
    /// rotation and, `forNextWorker`, make them listen again for the slot's next worker
    /// in that generation. A leaving generation's sockets only close after that: making
    /// one listen again costs the kernel a walk of every socket bound to its port,
    /// `TIME_WAIT` ones included, milliseconds on a busy server.
    case evacuate(generation: Int, slot: Int, forNextWorker: Bool = true)
    /// Answer ``SupervisorEvent/queuesEmpty(generation:)`` once the generation's own
    /// sockets hold no connection (at once, if it has none of its own).
    case awaitEmptyQueues(generation: Int)
    /// Answer ``SupervisorEvent/slotQueuesEmpty(_:)`` once the worker's slot's own
    /// sockets (of its generation) hold no connection and the worker waits.
    case awaitEmptySlot(WorkerID)
    /// Run the canary's health check once, against this canary worker; one still running
    /// after `timeout` is killed and fails. Answer with
    /// ``SupervisorEvent/canaryCheckResult(generation:_:)``.
    case runCanaryCheck(WorkerID, CanaryCheck, timeout: Duration)
    /// Generation `generation`'s canary just took its share: answer with
    /// ``SupervisorEvent/canaryMeasured(generation:at:steered:)``, the monotonic clock
    /// and the steering counters now, where its hold and its share count from.
    case measureCanary(generation: Int)
    case exit(code: Int32, reason: String?)
}

/// One step of carrying out a list of actions: an action, or workers to start together.
enum SupervisorStep: Equatable {
    case perform(SupervisorAction)
    /// Started in one trip to the main thread, in this order.
    case start([WorkerStart])

    struct WorkerStart: Equatable {
        var worker: WorkerID
        var configuration: Configuration
    }

    /// `actions` in order, except that the workers to start in a run of starts and timers
    /// start together, before that run's timers: no timer of the machine needs a start
    /// after it, and each trip to the main thread wakes two threads.
    static func steps(_ actions: [SupervisorAction]) -> [SupervisorStep] {
        var steps: [SupervisorStep] = []
        var starts: [WorkerStart] = []
        var timers: [SupervisorAction] = []
        func endRun() {
            if !starts.isEmpty { steps.append(.start(starts)) }
            steps += timers.map(SupervisorStep.perform)
            starts = []
            timers = []
        }
        for action in actions {
            switch action {
            case .spawn(let worker, let configuration):
                starts.append(WorkerStart(worker: worker, configuration: configuration))
            case .startTimer where !starts.isEmpty:
                timers.append(action)
            default:
                endRun()
                steps.append(.perform(action))
            }
        }
        endRun()
        return steps
    }
}

/// The course of one reload, as its asker sees it.
enum ReloadProgress: Sendable, Equatable, CustomStringConvertible {
    /// Another reload is under way; this one follows it (requests made meanwhile collapse into one).
    case queued
    case loadingConfiguration
    case starting(generation: Int, workers: Int)
    case workerReady(WorkerID, ready: Int, of: Int)
    /// A rolling reload: the new generation replaces `batch` slots at a time.
    case startingRollout(generation: Int, workers: Int, batch: Int)
    /// A rolling reload's batch: these slots' new workers start.
    case startingBatch(generation: Int, slots: [Int])
    /// A rolling reload's batch took over its slots; the old workers there drain.
    case replacedSlots(generation: Int, slots: [Int], replaced: Int, of: Int)
    /// A canary reload: the new generation starts `workers` workers.
    case startingCanary(generation: Int, workers: Int, weight: Int)
    /// The canary's workers are ready and take about `weight` percent of new connections.
    case canaryServing(generation: Int, slots: [Int], weight: Int, hold: Duration?, after: Canary.After?)
    /// The canary was promoted: the new generation replaces the rest by this strategy.
    case promoted(generation: Int, strategy: ReloadStrategy)
    /// The rolling strategy cannot replace these workers, for this reason: the reload
    /// goes all at once.
    case allAtOnceInstead(String)
    /// The new generation serves and the old one drains. Final.
    case tookOver(generation: Int, replaced: Int?)
    /// Nothing changed, for this reason. Final.
    case failed(String)
    /// The configuration, read again, is invalid: nothing changed. Final.
    case configurationRejected(String)
    /// The new generation failed; the old one keeps serving. Final.
    case rolledBack(generation: Int, reason: String)
    /// The canary was rolled back as planned (`batonctl rollback`, or the end of its
    /// hold); nothing failed, and the old generation keeps serving. Final.
    case canceled(generation: Int, reason: String)

    var isFinal: Bool {
        switch self {
        case .tookOver, .failed, .configurationRejected, .rolledBack, .canceled: true
        default: false
        }
    }

    var succeeded: Bool {
        if case .tookOver = self { return true }
        return false
    }

    var description: String {
        switch self {
        case .queued: "queued behind the reload under way"
        case .loadingConfiguration: "reading the configuration"
        case .starting(let generation, let workers): "starting generation \(generation) (\(workers) worker\(workers == 1 ? "" : "s"))"
        case .workerReady(let worker, let ready, let total): "worker \(worker) ready (\(ready)/\(total))"
        case .startingRollout(let generation, let workers, let batch):
            "rolling: generation \(generation) replaces \(workers) workers, \(batch) at a time"
        case .startingBatch(let generation, let slots):
            "generation \(generation) starting slot\(slots.count == 1 ? "" : "s") \(Self.list(slots))"
        case .replacedSlots(let generation, let slots, let replaced, let total):
            "generation \(generation) serves slot\(slots.count == 1 ? "" : "s") \(Self.list(slots)) (\(replaced)/\(total)); the old workers there drain"
        case .startingCanary(let generation, let workers, let weight):
            "canary: generation \(generation) starts \(workers) worker\(workers == 1 ? "" : "s") for about \(weight)% of new connections"
        case .canaryServing(let generation, let slots, let weight, let hold, let after):
            "canary: generation \(generation) (slot\(slots.count == 1 ? "" : "s") \(Self.list(slots))) takes about \(weight)% of new connections; "
                + (hold.map { "\(after == .promote ? "promoted" : "rolled back") after \(DurationFormat.string($0))" }
                    ?? "until batonctl promote or batonctl rollback")
        case .promoted(let generation, let strategy):
            "canary promoted: generation \(generation) replaces the other workers \(strategy == .rolling ? "rolling" : "all at once")"
        case .allAtOnceInstead(let reason): "not rolling (\(reason)): all at once instead"
        case .tookOver(let generation, let replaced):
            "generation \(generation) serves" + (replaced.map { "; generation \($0) drains" } ?? "")
        case .failed(let reason), .configurationRejected(let reason): "reload failed: \(reason)"
        case .rolledBack(let generation, let reason):
            "rolled back: generation \(generation) failed (\(reason)); the previous generation keeps serving"
        case .canceled(let generation, let reason):
            "canceled: generation \(generation) \(reason); the previous generation keeps serving"
        }
    }

    static func list(_ slots: [Int]) -> String {
        slots.map(String.init).joined(separator: ", ")
    }
}

/// Events worth a log line, and for systemd a notification.
enum Announcement: Sendable, Equatable {
    /// The first generation is ready: the service is up.
    case serving(generation: Int)
    case workerExited(WorkerID, WorkerExit, restartAfter: Duration?)
    /// A serving worker accepted nothing for its stall timeout: it is out of rotation
    /// and draining, and its slot restarts after `restartAfter`.
    case workerStalled(WorkerID, after: Duration, restartAfter: Duration)
    /// A generation has no worker left.
    case generationGone(Int)
    case stopping
}
