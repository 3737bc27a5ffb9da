import BatonCore
import Testing

@testable import Baton

/// Rolling reloads in the state machine: batches, the N + K bound, rolling back, and the
/// nasty orders, driven by event sequences.
@Suite struct RollingReloadTests {
    static func rolling(workers: Int = 4, batch: Int = 1, command: String = "./server-v2") -> Configuration {
        var configuration = SupervisorStateMachineTests.configuration(workers: workers, command: command)
        configuration.workers.strategy = .rolling
        configuration.workers.batch = batch
        return configuration
    }

    /// Generation 1 serves `workers` workers and a rolling reload (id 1) to generation 2 started.
    static func rollingOut(workers: Int = 4, batch: Int = 1) -> (SupervisorStateMachine, [SupervisorAction]) {
        var machine = SupervisorStateMachineTests.serving(workers: workers)
        _ = machine.handle(.reloadRequested(1))
        let actions = machine.handle(.configurationLoaded(rolling(workers: workers, batch: batch)))
        return (machine, actions)
    }

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    /// Replaces slot `slot` (batch 1): its new worker gets ready, the old one's slot
    /// empties, the old one drains and exits. Returns the actions of that exit.
    @discardableResult
    func replace(_ slot: Int, in machine: inout SupervisorStateMachine) -> [SupervisorAction] {
        _ = machine.handle(.workerReady(g(2, slot)))
        _ = machine.handle(.slotQueuesEmpty(g(1, slot)))
        return machine.handle(.workerExited(g(1, slot), .exited(0)))
    }

    @Test func aRollingReloadStartsOneBatchOnly() {
        let (machine, actions) = Self.rollingOut(workers: 4, batch: 1)
        #expect(actions.spawned == [g(2, 0)])
        #expect(actions.reports == [.startingRollout(generation: 2, workers: 4, batch: 1), .startingBatch(generation: 2, slots: [0])])
        var expected = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: 4)
        expected.batchSlots = [0]
        #expect(machine.rollout == expected)
    }

    @Test func aReadyBatchTakesItsSlotsAndTheOldWorkersThereLeaveBeforeTheNextBatch() {
        var (machine, _) = Self.rollingOut(workers: 4, batch: 1)
        let ready = machine.handle(.workerReady(g(2, 0)))
        #expect(ready.contains(.steer([1: [1, 2, 3], 2: [0]])))
        #expect(ready.contains(.awaitEmptySlot(g(1, 0))))
        #expect(ready.timers.contains(.departureGrace(g(1, 0))))
        #expect(ready.reports.contains(.replacedSlots(generation: 2, slots: [0], replaced: 1, of: 4)))
        #expect(ready.spawned.isEmpty, "the next batch waits for the old worker of slot 0 to exit")
        #expect(ready.signals.isEmpty, "the old worker accepts what its slot holds first")
        let empty = machine.handle(.slotQueuesEmpty(g(1, 0)))
        #expect(empty.signals == [Signal(g(1, 0), 15)])
        #expect(empty.contains(.cancelTimer(.departureGrace(g(1, 0)))))
        #expect(empty.timers == [.retiredDeadline(g(1, 0))])
        let exited = machine.handle(.workerExited(g(1, 0), .exited(0)))
        #expect(exited.contains(.evacuate(generation: 1, slot: 0, forNextWorker: true)), "a rollback would give slot 0 back")
        #expect(exited.spawned == [g(2, 1)])
    }

    @Test func theDrainGraceDrainsADepartingWorkerWhoseSlotNeverEmpties() {
        var (machine, _) = Self.rollingOut(workers: 2, batch: 1)
        _ = machine.handle(.workerReady(g(2, 0)))
        #expect(machine.handle(.timerFired(.departureGrace(g(1, 0)))).signals == [Signal(g(1, 0), 15)])
        #expect(machine.handle(.slotQueuesEmpty(g(1, 0))).isEmpty, "drained once only")
        #expect(machine.handle(.timerFired(.retiredDeadline(g(1, 0)))).signals == [Signal(g(1, 0), 9)])
    }

    @Test func theLastBatchTakesOverAndTheOldGenerationGoesOnceItsLastWorkerExits() {
        var (machine, _) = Self.rollingOut(workers: 3, batch: 1)
        replace(0, in: &machine)
        replace(1, in: &machine)
        let last = machine.handle(.workerReady(g(2, 2)))
        #expect(last.reports.contains(.tookOver(generation: 2, replaced: 1)))
        #expect(last.contains(.steer([2: [0, 1, 2]])))
        #expect(machine.rollout == nil)
        #expect(machine.phase == .running)
        #expect(machine.serving?.number == 2)
        #expect(machine.generations.count == 2)
        _ = machine.handle(.slotQueuesEmpty(g(1, 2)))
        let gone = machine.handle(.workerExited(g(1, 2), .exited(0)))
        #expect(gone.contains(.announce(.generationGone(1))))
        #expect(
            gone.contains(.evacuate(generation: 1, slot: 2, forNextWorker: false)),
            "generation 1 drains: its socket will not take a worker again")
        #expect(machine.generations.map(\.number) == [2])
    }

    @Test func batchesOfTwoReplaceTwoSlotsAtATime() {
        var (machine, actions) = Self.rollingOut(workers: 4, batch: 2)
        #expect(actions.spawned == [g(2, 0), g(2, 1)])
        #expect(machine.handle(.workerReady(g(2, 0))).steerings.isEmpty, "the batch takes over together")
        let ready = machine.handle(.workerReady(g(2, 1)))
        #expect(ready.contains(.steer([1: [2, 3], 2: [0, 1]])))
        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        #expect(machine.handle(.workerExited(g(1, 1), .exited(0))).spawned == [g(2, 2), g(2, 3)])
    }

    /// Plays whole rolling reloads, with every old worker exiting when told to drain,
    /// and counts the workers alive after every step.
    @Test(arguments: [(4, 1), (4, 2), (5, 2), (3, 5)])
    func neverMoreThanCountPlusBatchWorkersAreAlive(workers: Int, batch: Int) {
        var machine = SupervisorStateMachineTests.serving(workers: workers)
        var alive = Set((0..<workers).map { g(1, $0) })
        var events: [SupervisorEvent] = [.reloadRequested(1), .configurationLoaded(Self.rolling(workers: workers, batch: batch))]
        var peak = alive.count
        var tookOver = false
        while !events.isEmpty {
            let actions = machine.handle(events.removeFirst())
            for action in actions {
                switch action {
                case .spawn(let worker, _):
                    alive.insert(worker)
                    events.append(.workerReady(worker))
                case .signal(let worker, _) where alive.contains(worker):
                    alive.remove(worker)
                    events.append(.workerExited(worker, .exited(0)))
                case .awaitEmptySlot(let worker):
                    events.append(.slotQueuesEmpty(worker))
                case .reportReload(_, .tookOver):
                    tookOver = true
                default:
                    break
                }
            }
            peak = max(peak, alive.count)
        }
        #expect(tookOver)
        #expect(peak == workers + min(batch, workers))
        #expect(alive == Set((0..<workers).map { g(2, $0) }))
        #expect(machine.generations.map(\.number) == [2])
    }

    @Test func aBatchFailingMidRolloutReportsItsSlotAndGivesTheReplacedSlotsBackInReverse() {
        var (machine, _) = Self.rollingOut(workers: 4, batch: 1)
        replace(0, in: &machine)
        replace(1, in: &machine)
        let failed = machine.handle(.workerExited(g(2, 2), .exited(1)))
        #expect(
            failed.reports == [
                .rolledBack(generation: 2, reason: "slot 2: worker g2/s2 exited with status 1 before it was ready; slots 0, 1 go back to generation 1")
            ])
        #expect(machine.phase == .running)
        // Last replaced first: an old-configuration worker starts again in slot 1.
        #expect(failed.spawned == [g(1, 1, 1)])
        #expect(failed.contains { if case .spawn(_, let configuration) = $0 { configuration.workers.command == ["./server"] } else { false } })
        let back = machine.handle(.workerReady(g(1, 1, 1)))
        #expect(back.contains(.steer([1: [1, 2, 3], 2: [0]])))
        #expect(back.contains(.awaitEmptySlot(g(2, 1))))
        #expect(back.spawned.isEmpty)
        _ = machine.handle(.slotQueuesEmpty(g(2, 1)))
        #expect(machine.handle(.workerExited(g(2, 1), .exited(0))).spawned == [g(1, 0, 1)])
        let done = machine.handle(.workerReady(g(1, 0, 1)))
        #expect(done.contains(.steer([1: [0, 1, 2, 3]])))
        #expect(machine.rollout == nil)
        #expect(machine.generations.last?.role == .rollingBack)
        _ = machine.handle(.slotQueuesEmpty(g(2, 0)))
        #expect(machine.handle(.workerExited(g(2, 0), .exited(0))).contains(.announce(.generationGone(2))))
        #expect(machine.generations.map(\.number) == [1])
        #expect(machine.serving?.workers.values.allSatisfy { $0.state == .ready } == true)
    }

    @Test func aFirstBatchMissingItsReadyTimeoutRollsBackWithNothingToGiveBack() {
        var (machine, _) = Self.rollingOut(workers: 2, batch: 1)
        let timedOut = machine.handle(.timerFired(.readyTimeout(g(2, 0))))
        #expect(timedOut.reports == [.rolledBack(generation: 2, reason: "slot 0: worker g2/s0 was not ready within 5s")])
        #expect(timedOut.signals == [Signal(g(2, 0), 15)])
        #expect(timedOut.timers == [.retiredDeadline(g(2, 0))])
        #expect(timedOut.spawned.isEmpty)
        #expect(machine.rollout == nil)
        #expect(machine.handle(.workerExited(g(2, 0), .signaled(15))).contains(.announce(.generationGone(2))))
        #expect(machine.generations.map(\.number) == [1])
    }

    @Test func aReplacedSlotsNewWorkerCrashingLeavesTheRotationAndRollsBack() {
        var (machine, _) = Self.rollingOut(workers: 3, batch: 1)
        replace(0, in: &machine)
        _ = machine.handle(.workerReady(g(2, 1)))
        // Slot 1's old worker still drains; slot 0's new worker crashes.
        let crashed = machine.handle(.workerExited(g(2, 0), .signaled(11)))
        #expect(crashed.contains(.steer([1: [2], 2: [1]])))
        #expect(crashed.contains(.evacuate(generation: 2, slot: 0)))
        #expect(
            crashed.reports == [
                .rolledBack(generation: 2, reason: "slot 0: worker g2/s0 killed by SIGSEGV after it took over; slots 0, 1 go back to generation 1")
            ])
        #expect(crashed.spawned.isEmpty, "slot 1's old worker is still alive")
        let exited = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(exited.spawned == [g(1, 1, 1)])
        _ = machine.handle(.workerReady(g(1, 1, 1)))
        _ = machine.handle(.slotQueuesEmpty(g(2, 1)))
        #expect(machine.handle(.workerExited(g(2, 1), .exited(0))).spawned == [g(1, 0, 1)])
        let done = machine.handle(.workerReady(g(1, 0, 1)))
        #expect(done.contains(.steer([1: [0, 1, 2]])))
        #expect(machine.generations.map(\.number) == [1])
    }

    @Test func anOldWorkerCrashingInASlotNotYetReplacedRestartsAsUsual() {
        var (machine, _) = Self.rollingOut(workers: 3, batch: 1)
        _ = machine.handle(.workerReady(g(2, 0)))
        let crashed = machine.handle(.workerExited(g(1, 2), .exited(1)))
        #expect(crashed.contains(.steer([1: [1], 2: [0]])))
        #expect(crashed.contains(.evacuate(generation: 1, slot: 2)))
        #expect(crashed.timers == [.restart(generation: 1, slot: 2)])
        #expect(machine.rollout?.failure == nil)
        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 2))).spawned == [g(1, 2, 1)])
        #expect(machine.handle(.workerReady(g(1, 2, 1))).contains(.steer([1: [1, 2], 2: [0]])))
    }

    @Test func aSlotWaitingForItsRestartIsReplacedInstead() {
        var (machine, _) = Self.rollingOut(workers: 2, batch: 1)
        _ = machine.handle(.workerExited(g(1, 1), .exited(1)))
        let next = replace(0, in: &machine)
        #expect(next.spawned == [g(2, 1)])
        #expect(next.contains(.cancelTimer(.restart(generation: 1, slot: 1))))
        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 1))).isEmpty)
        let ready = machine.handle(.workerReady(g(2, 1)))
        #expect(ready.reports.contains(.tookOver(generation: 2, replaced: 1)))
        #expect(machine.rollout == nil)
        #expect(machine.serving?.number == 2)
    }

    @Test func aStopDuringARollingBatchFailsTheReloadAndDrainsEveryWorker() {
        var (machine, _) = Self.rollingOut(workers: 3, batch: 1)
        _ = machine.handle(.workerReady(g(2, 0)))
        let stop = machine.handle(.stopRequested)
        #expect(stop.reports == [.failed("Baton is stopping")])
        #expect(Set(stop.signals) == [Signal(g(1, 0), 15), Signal(g(1, 1), 15), Signal(g(1, 2), 15), Signal(g(2, 0), 15)])
        #expect(stop.contains(.cancelTimer(.departureGrace(g(1, 0)))))
        #expect(machine.rollout == nil)
        for worker in [g(1, 0), g(1, 1), g(1, 2)] {
            #expect(!machine.handle(.workerExited(worker, .exited(0))).contains { if case .evacuate = $0 { true } else { false } })
        }
        #expect(machine.handle(.workerExited(g(2, 0), .exited(0))).contains(.exit(code: 0, reason: nil)))
    }

    @Test func aReloadAskedDuringARollingReloadIsQueuedAndRunsOnceTheOldGenerationIsGone() {
        var (machine, _) = Self.rollingOut(workers: 2, batch: 1)
        #expect(machine.handle(.reloadRequested(2)).reports == [.queued])
        replace(0, in: &machine)
        let last = machine.handle(.workerReady(g(2, 1)))
        #expect(last.reports.contains(.tookOver(generation: 2, replaced: 1)))
        #expect(!last.contains(.loadConfiguration(.configured)))
        _ = machine.handle(.slotQueuesEmpty(g(1, 1)))
        #expect(machine.handle(.workerExited(g(1, 1), .exited(0))).contains(.loadConfiguration(.configured)))
    }

    @Test func aReloadAskedWhileARolloutGoesBackWaitsForIt() {
        var (machine, _) = Self.rollingOut(workers: 2, batch: 1)
        replace(0, in: &machine)
        _ = machine.handle(.workerExited(g(2, 1), .exited(1)))
        #expect(machine.handle(.reloadRequested(2)).reports == [.queued])
        _ = machine.handle(.workerReady(g(1, 0, 1)))
        _ = machine.handle(.slotQueuesEmpty(g(2, 0)))
        #expect(machine.handle(.workerExited(g(2, 0), .exited(0))).contains(.loadConfiguration(.configured)))
    }

    /// The old version no longer starts (its release was deleted): the rollback does not
    /// wait on it. The slot goes back to generation 1 as a crashed slot that restarts after
    /// its backoff, generation 2's worker there leaves, the rollout ends, and a reload that
    /// waited (the fix) runs.
    @Test func aRollbackWhoseOldWorkerCannotStartEndsAndLetsTheNextReloadRun() {
        var (machine, _) = Self.rollingOut(workers: 2, batch: 1)
        replace(0, in: &machine)
        _ = machine.handle(.workerExited(g(2, 1), .exited(1)))
        #expect(machine.handle(.reloadRequested(2)).reports == [.queued])
        let crashed = machine.handle(.workerExited(g(1, 0, 1), .exited(4)))
        #expect(crashed.contains(.steer([1: [1]])), "slot 0 leaves the rotation: no worker of generation 1 is ready there")
        #expect(crashed.contains(.awaitEmptySlot(g(2, 0))), "generation 2's worker in slot 0 leaves")
        #expect(crashed.timers.contains(.restart(generation: 1, slot: 0)), "slot 0 restarts after its backoff")
        #expect(machine.rollout == nil)
        _ = machine.handle(.slotQueuesEmpty(g(2, 0)))
        let gone = machine.handle(.workerExited(g(2, 0), .exited(0)))
        #expect(gone.contains(.loadConfiguration(.configured)), "the reload that waited runs")
    }

    @Test func statusShowsTheRolloutForwardAndBack() {
        var (machine, _) = Self.rollingOut(workers: 3, batch: 1)
        replace(0, in: &machine)
        func rollout() -> StatusReport.RolloutStatus? {
            StatusProjection(machine: machine, workers: WorkerTable(), reloads: [])
                .report(pid: 1, configurationName: "baton.toml", listeners: [], now: 0, scaledTo: nil, upgrades: 0, upgradeError: nil)
                .rollout
        }
        #expect(rollout() == .init(from: 1, to: 2, batch: 1, replacedSlots: [0], batchSlots: [1]))
        _ = machine.handle(.workerExited(g(2, 1), .exited(2)))
        let back = rollout()
        #expect(back?.rollingBack == "slot 1: worker g2/s1 exited with status 2 before it was ready")
        #expect(back?.batchSlots == [0])
        var report = StatusProjection(machine: machine, workers: WorkerTable(), reloads: [])
            .report(pid: 1, configurationName: "baton.toml", listeners: [], now: 0, scaledTo: nil, upgrades: 0, upgradeError: nil)
        report.rollout = back
        #expect(
            StatusFormatter.table(report).contains(
                "rolling back: generation 2 failed (slot 1: worker g2/s1 exited with status 2 before it was ready); slots still to give back to generation 1: 0; starting again: 0"
            ))
    }

    @Test func aRollingReloadThatChangesTheWorkerCountGoesAllAtOnce() {
        var machine = SupervisorStateMachineTests.serving(workers: 2)
        _ = machine.handle(.reloadRequested(1))
        let actions = machine.handle(.configurationLoaded(Self.rolling(workers: 3)))
        #expect(actions.reports.first == .allAtOnceInstead("the worker count changes from 2 to 3"))
        #expect(actions.spawned == [g(2, 0), g(2, 1), g(2, 2)])
        #expect(machine.rollout == nil)
    }
}
