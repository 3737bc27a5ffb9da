import Testing

@testable import Baton

/// Canary reloads in the state machine: the weighted share, promote, roll back, the hold,
/// and the nasty orders, driven by event sequences.
@Suite struct CanaryReloadTests {
    /// Generation 1 serves `workers` workers; a canary reload (id 1) of generation 2 started.
    static func canary(
        workers: Int = 4, strategy: ReloadStrategy = .rolling, _ canary: Canary = Canary(workers: 1),
        check: CanaryCheck? = nil, failures: Int = 3
    )
        -> (SupervisorStateMachine, [SupervisorAction])
    {
        var machine = SupervisorStateMachineTests.serving(workers: workers)
        _ = machine.handle(.reloadRequested(1, ReloadOptions(canary: canary)))
        var configuration = RollingReloadTests.rolling(workers: workers)
        configuration.workers.strategy = strategy
        configuration.workers.canaryCheck = check
        configuration.workers.canaryCheckInterval = .seconds(2)
        configuration.workers.canaryCheckFailures = failures
        let actions = machine.handle(.configurationLoaded(configuration, canary: canary))
        return (machine, actions)
    }

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    @Test func theEntriesGiveTheCanaryItsWeight() {
        for (old, canary, weight) in [(4, 1, 10), (3, 1, 10), (8, 2, 5), (7, 3, 33), (1024, 1, 10)] {
            let entries = Rotation.entries(old: old, canary: canary, weight: weight)
            let share = Double(canary * entries.canary) / Double(old * entries.old + canary * entries.canary)
            #expect(abs(share - Double(weight) / 100) < 0.02, "\(old) old, \(canary) canary, \(weight)%: \(share)")
            #expect(old * entries.old + canary * entries.canary <= 2048)
        }
        #expect(Rotation.entries(old: 4, canary: 1, weight: 10) == (9, 4))
    }

    @Test func aCanaryStartsItsWorkersAndTakesItsShareBesideEveryOldWorker() {
        var (machine, actions) = Self.canary(workers: 4, Canary(workers: 1, weight: 10, hold: .seconds(30), after: .promote))
        #expect(actions.spawned == [g(2, 0)])
        #expect(actions.reports == [.startingCanary(generation: 2, workers: 1, weight: 10)])
        let ready = machine.handle(.workerReady(g(2, 0)))
        let nine = Array(repeating: 0, count: 9) + Array(repeating: 1, count: 9) + Array(repeating: 2, count: 9) + Array(repeating: 3, count: 9)
        #expect(ready.contains(.steer([1: nine, 2: [0, 0, 0, 0]])))
        #expect(ready.timers.contains(.canaryHold(generation: 2)))
        #expect(ready.reports.contains(.canaryServing(generation: 2, slots: [0], weight: 10, hold: .seconds(30), after: .promote)))
        #expect(ready.signals.isEmpty, "every old worker keeps serving")
        #expect(machine.phase == .reloading([1]))
    }

    /// A canary's progress counts the canary's workers, and status calls its generation a
    /// canary once it takes its share, not "starting".
    @Test func aCanaryIsCountedAndShownAsACanary() {
        var (machine, _) = Self.canary(workers: 4, Canary(workers: 1))
        let report = {
            StatusProjection(machine: machine, workers: WorkerTable(), reloads: []).report(
                pid: 1, configurationName: "x", listeners: [], now: 0, scaledTo: nil, upgrades: 0, upgradeError: nil)
        }
        #expect(report().generations.map(\.role) == [.serving, .starting], "its workers start")
        let ready = machine.handle(.workerReady(g(2, 0)))
        #expect(ready.reports.first == .workerReady(g(2, 0), ready: 1, of: 1), "1 of the canary's 1 worker, not 1 of 4")
        #expect(report().generations.map(\.role) == [.serving, .canary])
    }

    @Test func aReloadAskedWhileACanaryHoldsIsRefused() {
        var (machine, _) = Self.canary()
        _ = machine.handle(.workerReady(g(2, 0)))
        let refused = machine.handle(.reloadRequested(2))
        #expect(
            refused == [.reportReload([2], .failed("a canary of generation 2 holds: promote it (batonctl promote) or roll it back (batonctl rollback) first"))])
        #expect(machine.pendingReloads.isEmpty)
    }

    @Test func rollbackDrainsTheCanaryOnceItsSocketsAreEmpty() {
        var (machine, _) = Self.canary()
        _ = machine.handle(.workerReady(g(2, 0)))
        let back = machine.handle(.rollbackRequested)
        #expect(back.reports == [.canceled(generation: 2, reason: "rolled back by batonctl rollback")])
        #expect(back.contains(.steer([1: [0, 1, 2, 3]])))
        #expect(back.contains(.awaitEmptySlot(g(2, 0))))
        #expect(back.signals.isEmpty)
        #expect(machine.rollout == nil)
        #expect(machine.phase == .running)
        #expect(machine.handle(.slotQueuesEmpty(g(2, 0))).signals == [Signal(g(2, 0), 15)])
        let gone = machine.handle(.workerExited(g(2, 0), .exited(0)))
        #expect(gone.contains(.evacuate(generation: 2, slot: 0, forNextWorker: false)), "the rolled-back generation has no next worker")
        #expect(gone.contains(.announce(.generationGone(2))))
        #expect(machine.generations.map(\.number) == [1])
    }

    @Test func aCanaryWorkerThatExitsDuringTheHoldRollsBackAtOnce() {
        var (machine, _) = Self.canary(workers: 4, Canary(workers: 2, hold: .seconds(60), after: .promote))
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        let exited = machine.handle(.workerExited(g(2, 1), .signaled(9)))
        #expect(exited.contains(.evacuate(generation: 2, slot: 1)))
        #expect(exited.contains(.cancelTimer(.canaryHold(generation: 2))))
        #expect(exited.reports == [.rolledBack(generation: 2, reason: "slot 1: worker g2/s1 killed by SIGKILL while the canary held")])
        #expect(exited.contains(.awaitEmptySlot(g(2, 0))))
        #expect(exited.steerings.last == .steer([1: [0, 1, 2, 3]]))
        #expect(machine.handle(.timerFired(.canaryHold(generation: 2))).isEmpty)
    }

    @Test func theHoldEndsAsAsked() {
        var (promoting, _) = Self.canary(workers: 2, Canary(workers: 1, hold: .seconds(5), after: .promote))
        _ = promoting.handle(.workerReady(g(2, 0)))
        #expect(promoting.handle(.timerFired(.canaryHold(generation: 2))).reports.first == .promoted(generation: 2, strategy: .rolling))
        var (rollingBack, _) = Self.canary(workers: 2, Canary(workers: 1, hold: .seconds(5), after: .rollback))
        _ = rollingBack.handle(.workerReady(g(2, 0)))
        #expect(
            rollingBack.handle(.timerFired(.canaryHold(generation: 2))).reports == [
                .canceled(generation: 2, reason: "the canary held for 5s and was to be rolled back then")
            ])
        var (holding, _) = Self.canary(workers: 2, Canary(workers: 1, hold: .seconds(5)))
        _ = holding.handle(.workerReady(g(2, 0)))
        #expect(holding.handle(.timerFired(.canaryHold(generation: 2))).isEmpty)
        #expect(holding.rollout?.canary != nil)
    }

    @Test func promotingRollingMakesTheCanarySlotsTheFirstReplacedAndRollsOnFromThere() {
        var (machine, _) = Self.canary(workers: 3)
        _ = machine.handle(.workerReady(g(2, 0)))
        let promoted = machine.handle(.promoteRequested)
        #expect(promoted.reports == [.promoted(generation: 2, strategy: .rolling), .replacedSlots(generation: 2, slots: [0], replaced: 1, of: 3)])
        #expect(promoted.contains(.steer([1: [1, 2], 2: [0]])))
        #expect(promoted.contains(.awaitEmptySlot(g(1, 0))))
        #expect(promoted.spawned.isEmpty, "the next batch waits for slot 0's old worker")
        _ = machine.handle(.slotQueuesEmpty(g(1, 0)))
        #expect(machine.handle(.workerExited(g(1, 0), .exited(0))).spawned == [g(2, 1)])
        _ = machine.handle(.workerReady(g(2, 1)))
        _ = machine.handle(.slotQueuesEmpty(g(1, 1)))
        _ = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(machine.handle(.workerReady(g(2, 2))).reports.contains(.tookOver(generation: 2, replaced: 1)))
    }

    @Test func promotingAllAtOnceStartsTheOtherSlotsAndTakesOverTogether() {
        var (machine, _) = Self.canary(workers: 3, strategy: .allAtOnce)
        _ = machine.handle(.workerReady(g(2, 0)))
        let promoted = machine.handle(.promoteRequested)
        #expect(promoted.reports == [.promoted(generation: 2, strategy: .allAtOnce)])
        #expect(promoted.contains(.steer([1: [0, 1, 2]])))
        #expect(promoted.spawned == [g(2, 1), g(2, 2)])
        #expect(machine.rollout == nil)
        _ = machine.handle(.workerReady(g(2, 1)))
        let took = machine.handle(.workerReady(g(2, 2)))
        #expect(took.reports.contains(.tookOver(generation: 2, replaced: 1)))
        #expect(took.contains(.steer([2: [0, 1, 2]])))
    }

    @Test func aCanaryWorkerDyingDuringARollingPromotionGivesItsSlotBack() {
        var (machine, _) = Self.canary(workers: 3)
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.promoteRequested)
        _ = machine.handle(.slotQueuesEmpty(g(1, 0)))
        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        let died = machine.handle(.workerExited(g(2, 0), .exited(1)))
        #expect(
            died.reports == [
                .rolledBack(generation: 2, reason: "slot 0: worker g2/s0 exited with status 1 after it took over; slot 0 goes back to generation 1")
            ])
        #expect(died.contains(.evacuate(generation: 2, slot: 0)))
        // The batch of slot 1 stops; once its worker has exited, slot 0's old configuration starts again.
        #expect(died.signals == [Signal(g(2, 1), 15)])
        let stopped = machine.handle(.workerExited(g(2, 1), .exited(0)))
        #expect(stopped.spawned == [g(1, 0, 1)])
        let back = machine.handle(.workerReady(g(1, 0, 1)))
        #expect(back.contains(.steer([1: [0, 1, 2]])))
        #expect(machine.generations.map(\.number) == [1])
    }

    @Test func aStopWhileACanaryHoldsDrainsEverything() {
        var (machine, _) = Self.canary(workers: 2, Canary(workers: 1, hold: .seconds(5), after: .promote))
        _ = machine.handle(.workerReady(g(2, 0)))
        let stop = machine.handle(.stopRequested)
        #expect(stop.reports == [.failed("Baton is stopping")])
        #expect(Set(stop.signals) == [Signal(g(1, 0), 15), Signal(g(1, 1), 15), Signal(g(2, 0), 15)])
        #expect(machine.rollout == nil)
        #expect(machine.handle(.timerFired(.canaryHold(generation: 2))).isEmpty)
    }

    /// A stalled old worker is retired, and its exit is what lets a rolling batch start:
    /// while a canary holds, no batch may start over the canary's slots.
    @Test func anOldWorkerThatStallsAndExitsWhileACanaryHoldsStartsNoBatch() {
        var machine = SupervisorStateMachineTests.servingWithStallTimeout(workers: 3)
        _ = machine.handle(.reloadRequested(1, ReloadOptions(canary: Canary(workers: 1))))
        _ = machine.handle(.configurationLoaded(RollingReloadTests.rolling(workers: 3), canary: Canary(workers: 1)))
        _ = machine.handle(.workerReady(g(2, 0)))
        #expect(machine.handle(.workerStalled(g(1, 2))).signals == [Signal(g(1, 2), 15)])
        let exited = machine.handle(.workerExited(g(1, 2), .signaled(9)))
        #expect(exited.spawned.isEmpty, "the canary holds: no batch starts")
        #expect(machine.rollout?.batchSlots == [])
        #expect(machine.generation(2)?.workers[0]?.state == .ready, "the canary's worker is still the one in slot 0")
        let promoted = machine.handle(.promoteRequested)
        #expect(promoted.reports == [.promoted(generation: 2, strategy: .rolling), .replacedSlots(generation: 2, slots: [0], replaced: 1, of: 3)])
    }

    @Test func aCanaryAsBigAsTheServiceIsRefused() {
        var machine = SupervisorStateMachineTests.serving(workers: 2)
        _ = machine.handle(.reloadRequested(1))
        let refused = machine.handle(.configurationLoaded(RollingReloadTests.rolling(workers: 2), canary: Canary(workers: 2)))
        #expect(refused.reports == [.failed("canary refused: a canary of 2 worker(s) needs more than 2 slots, the service has 2; nothing changed")])
        #expect(refused.spawned.isEmpty)
        #expect(machine.phase == .running)
        #expect(machine.generations.count == 1)
    }

    // MARK: - The health check during the hold

    static let check = CanaryCheck(command: "test ! -e /tmp/bad")

    @Test func theHealthCheckRunsOnlyOnceTheCanaryServes() {
        var (machine, started) = Self.canary(workers: 3, Canary(workers: 2), check: Self.check)
        #expect(!started.timers.contains(.canaryCheck(generation: 2)), "not before the canary is ready")
        #expect(machine.handle(.timerFired(.canaryCheck(generation: 2))).isEmpty)
        #expect(!machine.handle(.workerReady(g(2, 0))).timers.contains(.canaryCheck(generation: 2)))
        let serving = machine.handle(.workerReady(g(2, 1)))
        #expect(serving.contains(.startTimer(.canaryCheck(generation: 2), after: .seconds(2))))
        #expect(machine.handle(.timerFired(.canaryCheck(generation: 2))) == [.runCanaryCheck(g(2, 0), Self.check, timeout: .seconds(2))])
        #expect(machine.handle(.canaryCheckResult(generation: 2, .passed)) == [.startTimer(.canaryCheck(generation: 2), after: .seconds(2))])
    }

    @Test func withoutAHealthCheckNoTimerRuns() {
        var (machine, _) = Self.canary(workers: 3)
        #expect(!machine.handle(.workerReady(g(2, 0))).timers.contains(.canaryCheck(generation: 2)))
        #expect(machine.handle(.timerFired(.canaryCheck(generation: 2))).isEmpty)
        #expect(machine.handle(.canaryCheckResult(generation: 2, .failed("exited with status 1"))).isEmpty)
        #expect(machine.rollout?.canary != nil)
    }

    @Test func failingTheHealthCheckNTimesInARowRollsBackAtOnce() {
        var (machine, _) = Self.canary(workers: 3, Canary(workers: 1, hold: .seconds(60), after: .promote), check: Self.check)
        _ = machine.handle(.workerReady(g(2, 0)))
        for _ in 1...2 {
            _ = machine.handle(.timerFired(.canaryCheck(generation: 2)))
            let again = machine.handle(.canaryCheckResult(generation: 2, .failed("exited with status 1")))
            #expect(again == [.startTimer(.canaryCheck(generation: 2), after: .seconds(2))])
        }
        #expect(machine.rollout?.canary?.checkFailures == 2)
        _ = machine.handle(.timerFired(.canaryCheck(generation: 2)))
        let back = machine.handle(.canaryCheckResult(generation: 2, .failed("exited with status 1")))
        #expect(
            back.reports == [
                .rolledBack(generation: 2, reason: "canary health check \"exec:test ! -e /tmp/bad\" failed 3 times in a row: exited with status 1")
            ])
        #expect(back.contains(.cancelTimer(.canaryHold(generation: 2))))
        #expect(back.contains(.cancelTimer(.canaryCheck(generation: 2))))
        #expect(!back.timers.contains(.canaryCheck(generation: 2)))
        #expect(back.contains(.steer([1: [0, 1, 2]])))
        #expect(back.contains(.awaitEmptySlot(g(2, 0))))
        #expect(machine.rollout == nil)
        #expect(machine.phase == .running)
    }

    @Test func aPassStartsTheCountOfFailuresAgain() {
        var (machine, _) = Self.canary(workers: 3, check: Self.check, failures: 2)
        _ = machine.handle(.workerReady(g(2, 0)))
        for result in [CanaryCheckResult.failed("exited with status 1"), .passed, .failed("killed by SIGKILL")] {
            _ = machine.handle(.timerFired(.canaryCheck(generation: 2)))
            #expect(machine.handle(.canaryCheckResult(generation: 2, result)).reports.isEmpty)
        }
        #expect(machine.rollout?.canary?.checkFailures == 1)
        _ = machine.handle(.timerFired(.canaryCheck(generation: 2)))
        let back = machine.handle(.canaryCheckResult(generation: 2, .failed("did not finish within 2s and was killed")))
        #expect(
            back.reports == [
                .rolledBack(
                    generation: 2, reason: "canary health check \"exec:test ! -e /tmp/bad\" failed 2 times in a row: did not finish within 2s and was killed")
            ])
    }

    @Test func aResultAfterThePromotionOrTheRollbackIsIgnored() {
        var (promoted, _) = Self.canary(workers: 3, check: Self.check, failures: 1)
        _ = promoted.handle(.workerReady(g(2, 0)))
        _ = promoted.handle(.timerFired(.canaryCheck(generation: 2)))
        #expect(promoted.handle(.promoteRequested).contains(.cancelTimer(.canaryCheck(generation: 2))))
        #expect(promoted.handle(.canaryCheckResult(generation: 2, .failed("exited with status 1"))).isEmpty)
        #expect(promoted.handle(.timerFired(.canaryCheck(generation: 2))).isEmpty)
        #expect(promoted.rollout?.failure == nil, "the promotion goes on")

        var (rolledBack, _) = Self.canary(workers: 3, check: Self.check, failures: 1)
        _ = rolledBack.handle(.workerReady(g(2, 0)))
        _ = rolledBack.handle(.timerFired(.canaryCheck(generation: 2)))
        #expect(rolledBack.handle(.rollbackRequested).reports == [.canceled(generation: 2, reason: "rolled back by batonctl rollback")])
        #expect(rolledBack.handle(.canaryCheckResult(generation: 2, .failed("exited with status 1"))).isEmpty)
        #expect(rolledBack.handle(.canaryCheckResult(generation: 2, .passed)).isEmpty)
    }

    @Test func oneFailureIsEnoughWhenOneIsAllowed() {
        var (machine, _) = Self.canary(workers: 2, check: Self.check, failures: 1)
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.timerFired(.canaryCheck(generation: 2)))
        #expect(
            machine.handle(.canaryCheckResult(generation: 2, .failed("exited with status 3"))).reports
                == [.rolledBack(generation: 2, reason: "canary health check \"exec:test ! -e /tmp/bad\" failed once: exited with status 3")])
    }
}
