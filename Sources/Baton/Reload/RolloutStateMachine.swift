/// A rollout under way (Docs/rollouts.md), as a sub-machine of ``SupervisorStateMachine``:
/// generation `to` takes over generation `from`'s slots `batch` at a time, all at once
/// after a canary, or with a canary first (`+Canary`).
///
/// Rolling, each batch starts only once the old workers of the one before have exited,
/// so that at most `slots + batch` workers are alive. Once a batch fails it goes back the
/// same way: old-configuration workers start again in `from` for the replaced slots,
/// last replaced first, `batch` at a time, and take those slots back.
///
/// It owns the rollout's state and decides its course. It reads who is where from the
/// ``GenerationTable`` it is handed and never changes it: what should happen there comes
/// back as ``RolloutAction``s, which the parent performs in order. Pure, like its parent.
struct RolloutStateMachine: Sendable, Equatable {
    let from: Int
    let to: Int
    let batch: Int
    /// How many slots both generations have.
    let slots: Int
    /// Slots whose rotation entry is generation `to`'s socket, in the order they were
    /// replaced.
    var replaced: [Int] = []
    /// The batch under way: slots whose worker is starting, in `to` going forward, in
    /// `from` going back.
    var batchSlots: [Int] = []
    /// Why the rollout goes back; nil while it goes forward.
    var failure: String?
    /// The canary that holds (or starts), until it is promoted or rolled back.
    var canary: CanaryHold?

    init(from: Int, to: Int, batch: Int, slots: Int, canary: Canary? = nil) {
        self.from = from
        self.to = to
        self.batch = batch
        self.slots = slots
        self.canary = canary.map { CanaryHold(asked: $0) }
    }

    /// The generation whose socket of `slot` is in rotation (when its worker is ready).
    func owner(of slot: Int) -> Int {
        replaced.contains(slot) ? to : from
    }

    /// The generation whose workers the batch under way starts.
    var starting: Int { failure == nil ? to : from }
    /// The generation whose workers the batch under way replaces: it yields those slots.
    var yielding: Int { failure == nil ? from : to }

    /// Why a rolling reload cannot go from `old` to `new`, if it cannot: each slot's new
    /// worker takes the old one's place, so both need the same slots and listeners.
    static func rollingObstacle(from old: Configuration, to new: Configuration) -> String? {
        if old.workers.count != new.workers.count {
            return "the worker count changes from \(old.workers.count) to \(new.workers.count)"
        }
        if old.listeners.map({ [$0.name, "\($0.address)", $0.reusePort.rawValue] })
            != new.listeners.map({ [$0.name, "\($0.address)", $0.reusePort.rawValue] })
        {
            return "the listeners change"
        }
        return nil
    }

    // MARK: - Events

    /// The rollout begins, generation `to` just added to `table`: a canary's workers
    /// start, or the first batch.
    mutating func start(_ table: GenerationTable) -> [RolloutAction] {
        guard let canary else {
            return [.report(.startingRollout(generation: to, workers: slots, batch: batch))] + advance(table)
        }
        let workers = canary.asked.workers
        return [.report(.startingCanary(generation: to, workers: workers, weight: canary.asked.weight))] + startBatch(Array(0..<workers))
    }

    /// Ends the rollout once every slot is replaced (or back), else starts the next
    /// batch once no replaced worker is left alive: at most `count + batch` workers.
    /// Nothing while a batch is under way or a canary holds.
    mutating func advance(_ table: GenerationTable) -> [RolloutAction] {
        guard batchSlots.isEmpty, canary == nil, let old = table.generation(from), let new = table.generation(to) else { return [] }
        if failure == nil && replaced.count == slots {
            return [.tookOver]
        }
        if failure != nil && replaced.isEmpty {
            return [.gaveBack]
        }
        guard old.retired.isEmpty, new.retired.isEmpty else { return [] }
        let next =
            failure == nil
            ? Array((0..<slots).filter { !replaced.contains($0) }.prefix(batch))
            : Array(replaced.reversed().prefix(batch))
        let actions = startBatch(next)
        return failure == nil ? actions + [.report(.startingBatch(generation: to, slots: next))] : actions
    }

    /// Starts the workers of a batch: in `to` going forward, in `from` going back.
    mutating func startBatch(_ slots: [Int]) -> [RolloutAction] {
        batchSlots = slots
        return [.startWorkers(generation: starting, slots: slots)]
    }

    /// A worker of the batch under way is ready: once all are, the batch takes over its
    /// slots (or, a canary's, its share) and the workers it replaces leave.
    mutating func workerReady(_ id: WorkerID, _ table: GenerationTable) -> [RolloutAction] {
        guard starting == id.generation, batchSlots.contains(id.slot), let generation = table.generation(starting),
            batchSlots.allSatisfy({ generation.workers[$0]?.state == .ready })
        else { return [] }
        let slots = batchSlots
        batchSlots = []
        if canary != nil, failure == nil {
            return canaryReady(slots: slots, table)
        }
        if failure == nil {
            replaced += slots
        } else {
            replaced.removeAll { slots.contains($0) }
        }
        return handOver(slots, from: yielding)
    }

    /// The slots' sockets of the starting side take their place in the rotation and the
    /// workers of generation `yielding` there leave; the parent then advances.
    func handOver(_ slots: [Int], from yielding: Int) -> [RolloutAction] {
        var actions: [RolloutAction] = [.handOver(slots: slots, from: yielding)]
        if failure == nil {
            actions.append(.report(.replacedSlots(generation: to, slots: slots, replaced: replaced.count, of: self.slots)))
        }
        return actions
    }

    /// An old-configuration worker started to take a slot back exited before it was
    /// ready. The rollback does not wait for it: its version may no longer start at all
    /// (a deleted release), and a rollback that never ends would keep every later reload,
    /// the one that fixes things too, waiting. The slot goes back to the old generation as
    /// it is, a crashed slot that restarts after its backoff (and out of rotation until a
    /// worker there is ready), and the new generation's worker there leaves.
    mutating func takeBackUnready(slot: Int) -> [RolloutAction] {
        guard failure != nil, batchSlots.contains(slot) else { return [] }
        batchSlots.removeAll { $0 == slot }
        replaced.removeAll { $0 == slot }
        return [.handOver(slots: [slot], from: to)]
    }

    /// A worker of the new generation exited: whether it leaves the rotation (it was
    /// ready, in a replaced or canary slot), and why the rollout turns back
    /// (``fail(_:_:)``, which the parent asks for once it has steered around the worker).
    func exited(_ worker: SupervisorStateMachine.Worker, _ exit: WorkerExit) -> (leavesRotation: Bool, reason: String) {
        let id = worker.id
        let canarySlot = canary?.slots.contains(id.slot) ?? false
        let inRotation = replaced.contains(id.slot) || canarySlot
        let when = canarySlot ? "while the canary held" : worker.state == .ready && inRotation ? "after it took over" : "before it was ready"
        return (worker.state == .ready && inRotation, "slot \(id.slot): worker \(id) \(exit) \(when)")
    }

    /// A new worker failed, or the canary is rolled back (`planned`: as the operator
    /// asked, nothing failed): the reload is over, and the rollout turns back. The batch
    /// under way stops (its workers were never in rotation).
    mutating func fail(_ reason: String, _ table: GenerationTable, planned: Bool = false) -> [RolloutAction] {
        guard failure == nil, table.generation(to) != nil else { return [] }
        let canarySlots = canary?.slots ?? []
        var actions = endCanary(table)
        if !batchSlots.isEmpty {
            actions.append(.stopWorkers(generation: to, slots: batchSlots))
        }
        batchSlots = []
        failure = reason
        if !canarySlots.isEmpty {
            // The canary leaves the rotation; its workers accept what their sockets hold, then drain.
            actions.append(.handOver(slots: canarySlots, from: to))
        }
        let back =
            replaced.isEmpty
            ? ""
            : "; slot\(replaced.count == 1 ? "" : "s") \(ReloadProgress.list(replaced)) \(replaced.count == 1 ? "goes" : "go") back to generation \(from)"
        actions.append(.rolledBack(reason + back, planned: planned))
        return actions
    }
}

/// What the rollout asks its parent, ``SupervisorStateMachine``, to do: each is
/// performed on the generation table and turned into ``SupervisorAction``s, in order.
enum RolloutAction: Sendable, Equatable {
    /// Start the workers of these slots in `generation`: new ones of the rollout's `to`,
    /// or, going back, each slot's next old-configuration worker in `from`. A slot of
    /// `from` waiting for its restart waits no more: this start replaces the restart.
    case startWorkers(generation: Int, slots: [Int])
    /// These slots' workers of `generation`, not yet in rotation, stop: out of their
    /// slots, told to drain, killed at their drain timeout.
    case stopWorkers(generation: Int, slots: [Int])
    /// New connections go to the rotation as it is now.
    case steer
    /// New connections go to the rotation as it is now, and the workers of `from` in
    /// these slots depart: they accept what their slots' sockets hold, then drain.
    case handOver(slots: [Int], from: Int)
    /// Tell the reload's askers how it goes, while it is under way.
    case report(ReloadProgress)
    /// The reload failed for this reason (with the slots to give back), or was canceled
    /// as planned (a canary rolled back on purpose): it is reported rolled back (or
    /// canceled) and is over, while the rollout goes on backwards.
    case rolledBack(String, planned: Bool = false)
    /// Every slot is the new generation's: the rollout is over, `to` serves and `from`
    /// drains.
    case tookOver
    /// Every replaced slot is back: the rollout is over, and `to` is stopped once its
    /// last workers have exited.
    case gaveBack
    /// A canary promoted all at once: the rollout is over, the canary's share ends and
    /// `to`'s other slots start, to take over all together.
    case promotedAllAtOnce
    case startTimer(SupervisorTimer, after: Duration)
    case cancelTimer(SupervisorTimer)
    /// Run the canary's health check once against this canary worker.
    case runCanaryCheck(WorkerID, CanaryCheck, timeout: Duration)
    /// The canary took its share: measure when, and the steering counters then
    /// (``SupervisorAction/measureCanary(generation:)``).
    case measureCanary
}
