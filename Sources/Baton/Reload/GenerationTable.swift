/// Who is where: the alive generations, oldest first, with their workers by slot and
/// the workers taken out of their slots. It keeps the bookkeeping that every decision
/// of ``SupervisorStateMachine`` shares (starting a worker with its ready timeout,
/// cancelling a worker's timers, retiring, scheduling a restart, forgetting finished
/// generations) and decides nothing itself.
struct GenerationTable: Sendable, Equatable {
    typealias Generation = SupervisorStateMachine.Generation
    typealias Worker = SupervisorStateMachine.Worker

    /// Alive generations, oldest first.
    private(set) var generations: [Generation] = []
    /// The number the next generation gets.
    private(set) var nextNumber = 1

    /// The generation whose workers serve, if any.
    var serving: Generation? {
        generations.last { $0.role == .serving }
    }

    var count: Int { generations.count }
    var isEmpty: Bool { generations.isEmpty }
    var indices: Range<Int> { generations.indices }

    subscript(index: Int) -> Generation {
        get { generations[index] }
        set { generations[index] = newValue }
    }

    /// Where generation `number` is, if it is alive.
    func index(of number: Int) -> Int? {
        generations.firstIndex { $0.number == number }
    }

    /// Where the worker's generation is, if it is alive.
    func index(of worker: WorkerID) -> Int? {
        index(of: worker.generation)
    }

    func generation(_ number: Int) -> Generation? {
        generations.first { $0.number == number }
    }

    /// The worker in its slot, if it is still that one (not a later start of the slot).
    func worker(_ id: WorkerID) -> Worker? {
        guard let index = index(of: id), let worker = generations[index].workers[id.slot], worker.id == id else { return nil }
        return worker
    }

    /// The configuration of every alive generation, by number: what their sockets serve.
    var socketUsers: [Int: Configuration] {
        Dictionary(uniqueKeysWithValues: generations.map { ($0.number, $0.configuration) })
    }

    /// Adds a generation of `configuration`, with no worker yet, numbered after the last one.
    @discardableResult
    mutating func add(_ configuration: Configuration) -> Int {
        generations.append(Generation(number: nextNumber, configuration: configuration))
        nextNumber += 1
        return generations.count - 1
    }

    /// Adds a generation that an earlier Baton numbered: the next one follows it.
    mutating func adopt(_ generation: Generation) {
        generations.append(generation)
        nextNumber = max(nextNumber, generation.number + 1)
    }

    /// Puts a new worker in its slot: it is spawned and must be ready within its
    /// generation's ready timeout.
    mutating func startWorker(_ id: WorkerID, at index: Int) -> [SupervisorAction] {
        let configuration = generations[index].configuration
        generations[index].workers[id.slot] = Worker(id: id)
        return [.spawn(id, configuration), .startTimer(.readyTimeout(id), after: configuration.workers.readyTimeout)]
    }

    /// Starts the slot's next worker: one more start of the slot than the last one.
    mutating func restartWorker(slot: Int, at index: Int) -> [SupervisorAction] {
        let start = generations[index].starts[slot, default: 0] + 1
        generations[index].starts[slot] = start
        return startWorker(WorkerID(generation: generations[index].number, slot: slot, start: start), at: index)
    }

    /// The timers a worker has in its state: a starting one's ready timeout, a ready one's healthy timer.
    static func cancelTimers(of worker: Worker) -> [SupervisorAction] {
        switch worker.state {
        case .starting: [.cancelTimer(.readyTimeout(worker.id))]
        case .ready: [.cancelTimer(.healthy(worker.id))]
        case .draining, .killed: []
        }
    }

    /// Counts one more crash in a row of the slot; returns the crashes in a row.
    mutating func countCrash(slot: Int, at index: Int) -> Int {
        let crashes = generations[index].crashes[slot, default: 0] + 1
        generations[index].crashes[slot] = crashes
        return crashes
    }

    /// Remembers how the slot's worker last ended (shown while the slot waits to restart).
    mutating func recordExit(of slot: Int, at index: Int, _ description: String) {
        generations[index].lastExits[slot] = description
    }

    /// The slot waits for its restart: the timer that starts it again.
    mutating func scheduleRestart(slot: Int, at index: Int, after delay: Duration) -> SupervisorAction {
        generations[index].restarting.insert(slot)
        return .startTimer(.restart(generation: generations[index].number, slot: slot), after: delay)
    }

    /// The slot no longer waits for its restart; nothing if it did not.
    mutating func cancelRestart(slot: Int, at index: Int) -> [SupervisorAction] {
        guard generations[index].restarting.remove(slot) != nil else { return [] }
        return [.cancelTimer(.restart(generation: generations[index].number, slot: slot))]
    }

    /// No slot of the generation waits for its restart any more.
    mutating func cancelRestarts(at index: Int) -> [SupervisorAction] {
        let slots = generations[index].restarting.sorted()
        generations[index].restarting.removeAll()
        return slots.map { .cancelTimer(.restart(generation: generations[index].number, slot: $0)) }
    }

    /// Takes the slot's worker out of its slot; it stays known, as retired, until it exits.
    mutating func retire(slot: Int, at index: Int, departing: Bool = false) -> Worker? {
        guard let worker = generations[index].workers.removeValue(forKey: slot) else { return nil }
        generations[index].retired[worker.id] = worker
        if departing {
            generations[index].departing.insert(worker.id)
        }
        return worker
    }

    mutating func update(_ id: WorkerID, _ change: (inout Worker) -> Void) {
        guard let index = index(of: id), var worker = generations[index].workers[id.slot], worker.id == id else { return }
        change(&worker)
        generations[index].workers[id.slot] = worker
    }

    /// Forgets the generations out of service with no worker left, and returns them.
    mutating func removeFinished() -> [Generation] {
        let finished = generations.filter {
            [.leaving, .draining, .rollingBack].contains($0.role) && $0.workers.isEmpty && $0.retired.isEmpty
        }
        generations.removeAll { generation in finished.contains { $0.number == generation.number } }
        return finished
    }
}

extension SupervisorStateMachine {
    /// The workers started by one start or reload.
    struct Generation: Sendable, Equatable {
        enum Role: String, Sendable, Equatable {
            /// Workers are starting; the generation does not serve yet.
            case starting
            case serving
            /// Replaced by a newer generation and out of rotation: its workers accept
            /// what its sockets already hold, then drain.
            case leaving
            /// Told to stop: replaced by a newer generation, or Baton is stopping.
            case draining
            /// Failed to start and is being stopped.
            case rollingBack = "rolling-back"
        }

        let number: Int
        let configuration: Configuration
        internal(set) var role: Role = .starting
        /// The live worker of each slot.
        internal(set) var workers: [Int: Worker] = [:]
        /// Crashes in a row, by slot.
        internal(set) var crashes: [Int: Int] = [:]
        /// Slots waiting for their restart delay.
        internal(set) var restarting: Set<Int> = []
        /// How each slot's worker last ended, when it crashed (with its last output).
        internal(set) var lastExits: [Int: String] = [:]
        /// Workers taken out of their slot (stalled, or replaced by a rolling reload),
        /// draining until they exit or their drain timeout kills them.
        internal(set) var retired: [WorkerID: Worker] = [:]
        /// Retired workers whose slot a rolling reload handed to another generation.
        internal(set) var departing: Set<WorkerID> = []
        /// The latest start number of each slot.
        var starts: [Int: Int] = [:]

        func isCrashLooping(slot: Int) -> Bool {
            crashes[slot, default: 0] >= SupervisorStateMachine.crashLoopThreshold
        }

        /// The slots whose worker is ready, in order.
        var readySlots: [Int] {
            workers.values.filter { $0.state == .ready }.map(\.id.slot).sorted()
        }
    }

    struct Worker: Sendable, Equatable {
        enum State: String, Sendable, Equatable {
            case starting, ready, draining, killed
        }

        let id: WorkerID
        internal(set) var state: State = .starting
        /// The last `STATUS=` the worker sent.
        internal(set) var status: String?
        /// The worker said `STOPPING=1`.
        internal(set) var announcedStopping = false
    }
}
