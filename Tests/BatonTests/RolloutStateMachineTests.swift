import Testing

@testable import Baton

/// The rollout sub-machine alone: its events against a generation table that the test
/// changes the way the parent would, and the nasty orders of rolling and canary reloads.
@Suite struct RolloutStateMachineTests {
    static func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        Self.g(generation, slot, start)
    }

    /// Generation 1 serves `workers` ready workers; generation 2 was just added, with
    /// none yet.
    static func table(workers: Int = 3, strategy: ReloadStrategy = .rolling, check: CanaryCheck? = nil) -> GenerationTable {
        var table = GenerationTable()
        let old = table.add(SupervisorStateMachineTests.configuration(workers: workers))
        table[old].role = .serving
        for slot in 0..<workers {
            table[old].workers[slot] = .init(id: g(1, slot), state: .ready)
        }
        var configuration = RollingReloadTests.rolling(workers: workers)
        configuration.workers.strategy = strategy
        configuration.workers.canaryCheck = check
        configuration.workers.canaryCheckInterval = .seconds(2)
        configuration.workers.canaryCheckFailures = 2
        table.add(configuration)
        return table
    }

    /// What the parent's table shows once these workers are started, or ready.
    static func started(_ workers: [WorkerID], in table: inout GenerationTable, state: SupervisorStateMachine.Worker.State = .starting) {
        for id in workers {
            guard let index = table.index(of: id) else { continue }
            table[index].workers[id.slot] = .init(id: id, state: state)
        }
    }

    static func ready(_ workers: [WorkerID], in table: inout GenerationTable) {
        started(workers, in: &table, state: .ready)
    }

    /// What the parent's table shows once these workers have left their slots (departed
    /// or stopped), and once they have exited.
    static func retire(_ workers: [WorkerID], in table: inout GenerationTable) {
        for id in workers {
            guard let index = table.index(of: id) else { continue }
            _ = table.retire(slot: id.slot, at: index, departing: true)
        }
    }

    static func exited(_ workers: [WorkerID], in table: inout GenerationTable) {
        for id in workers {
            guard let index = table.index(of: id) else { continue }
            table[index].retired[id] = nil
            table[index].departing.remove(id)
        }
    }

    static func gone(_ workers: [WorkerID], in table: inout GenerationTable) {
        retire(workers, in: &table)
        exited(workers, in: &table)
    }

    // MARK: - Rolling

    /// A rolling rollout (batch 1) whose first batch, slot 0, took over.
    static func firstSlotReplaced(workers: Int) -> (RolloutStateMachine, GenerationTable) {
        var table = Self.table(workers: workers)
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: workers)
        _ = rollout.start(table)
        Self.ready([g(2, 0)], in: &table)
        _ = rollout.workerReady(g(2, 0), table)
        return (rollout, table)
    }

    @Test func aBatchHandsItsSlotsOverTogetherAndTheNextWaitsForTheOldWorkersToExit() {
        var table = Self.table(workers: 3)
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 2, slots: 3)
        #expect(
            rollout.start(table) == [
                .report(.startingRollout(generation: 2, workers: 3, batch: 2)), .startWorkers(generation: 2, slots: [0, 1]),
                .report(.startingBatch(generation: 2, slots: [0, 1])),
            ])
        Self.ready([g(2, 0)], in: &table)
        #expect(rollout.workerReady(g(2, 0), table).isEmpty, "the batch takes over together")
        Self.ready([g(2, 1)], in: &table)
        #expect(
            rollout.workerReady(g(2, 1), table) == [
                .handOver(slots: [0, 1], from: 1), .report(.replacedSlots(generation: 2, slots: [0, 1], replaced: 2, of: 3)),
            ])
        Self.retire([g(1, 0), g(1, 1)], in: &table)
        #expect(rollout.advance(table).isEmpty, "at most count + batch workers: the old ones are still alive")
        Self.exited([g(1, 0)], in: &table)
        #expect(rollout.advance(table).isEmpty)
        Self.exited([g(1, 1)], in: &table)
        #expect(rollout.advance(table) == [.startWorkers(generation: 2, slots: [2]), .report(.startingBatch(generation: 2, slots: [2]))])
        #expect(rollout.advance(table).isEmpty, "a batch under way starts once")
        Self.ready([g(2, 2)], in: &table)
        #expect(
            rollout.workerReady(g(2, 2), table) == [
                .handOver(slots: [2], from: 1), .report(.replacedSlots(generation: 2, slots: [2], replaced: 3, of: 3)),
            ])
        #expect(rollout.advance(table) == [.tookOver], "every slot replaced: over, whether or not the last old worker still drains")
    }

    @Test func aBatchWorkerThatExitsBeforeItIsReadyTurnsTheRolloutBackLastReplacedFirst() {
        var (rollout, table) = Self.firstSlotReplaced(workers: 3)
        Self.gone([g(1, 0)], in: &table)
        #expect(rollout.advance(table).first == .startWorkers(generation: 2, slots: [1]))
        Self.ready([g(2, 1)], in: &table)
        _ = rollout.workerReady(g(2, 1), table)
        Self.gone([g(1, 1)], in: &table)
        _ = rollout.advance(table)
        Self.started([g(2, 2)], in: &table)
        let starting = SupervisorStateMachine.Worker(id: g(2, 2))
        let exit = rollout.exited(starting, .exited(1))
        #expect(!exit.leavesRotation, "it never was in rotation")
        #expect(exit.reason == "slot 2: worker g2/s2 exited with status 1 before it was ready")
        #expect(
            rollout.fail(exit.reason, table) == [
                .stopWorkers(generation: 2, slots: [2]),
                .rolledBack("slot 2: worker g2/s2 exited with status 1 before it was ready; slots 0, 1 go back to generation 1"),
            ])
        #expect(rollout.fail("again", table).isEmpty, "a rollout turns back once")
        Self.retire([g(2, 2)], in: &table)
        #expect(rollout.advance(table).isEmpty, "the stopped worker is still alive")
        Self.exited([g(2, 2)], in: &table)
        #expect(rollout.advance(table) == [.startWorkers(generation: 1, slots: [1])], "last replaced first, and no report: the reload is over")
        #expect(rollout.workerReady(g(2, 1), table).isEmpty, "a worker of the side that yields is no batch worker")
        Self.ready([g(1, 1, 1)], in: &table)
        #expect(rollout.workerReady(g(1, 1, 1), table) == [.handOver(slots: [1], from: 2)])
        Self.gone([g(2, 1)], in: &table)
        #expect(rollout.advance(table) == [.startWorkers(generation: 1, slots: [0])])
        Self.ready([g(1, 0, 1)], in: &table)
        #expect(rollout.workerReady(g(1, 0, 1), table) == [.handOver(slots: [0], from: 2)])
        #expect(rollout.advance(table) == [.gaveBack], "every slot back: over, while generation 2's last worker still drains")
    }

    @Test func aReplacedSlotsWorkerThatCrashesLeavesTheRotation() {
        let (rollout, _) = Self.firstSlotReplaced(workers: 2)
        let exit = rollout.exited(.init(id: g(2, 0), state: .ready), .signaled(11))
        #expect(exit.leavesRotation)
        #expect(exit.reason == "slot 0: worker g2/s0 killed by SIGSEGV after it took over")
    }

    @Test func anOldWorkerThatCannotStartAgainGivesItsSlotBackAsItIs() {
        var table = Self.table(workers: 2)
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: 2)
        _ = rollout.start(table)
        #expect(rollout.takeBackUnready(slot: 0).isEmpty, "going forward, a crashed old worker restarts as usual")
        Self.ready([g(2, 0)], in: &table)
        _ = rollout.workerReady(g(2, 0), table)
        Self.gone([g(1, 0)], in: &table)
        _ = rollout.advance(table)
        _ = rollout.fail("slot 1: it failed", table)
        Self.gone([g(2, 1)], in: &table)
        #expect(rollout.advance(table) == [.startWorkers(generation: 1, slots: [0])])
        #expect(rollout.takeBackUnready(slot: 0) == [.handOver(slots: [0], from: 2)])
        #expect(rollout.replaced.isEmpty && rollout.batchSlots.isEmpty)
        #expect(rollout.advance(table) == [.gaveBack])
    }

    // MARK: - Canary

    static let check = CanaryCheck(command: "test ! -e /tmp/bad")

    /// A canary of `canary` started over `table`; its workers are not ready yet.
    static func canary(_ canary: Canary = Canary(workers: 1), _ table: GenerationTable) -> RolloutStateMachine {
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: table.generation(1)?.configuration.workers.count ?? 0, canary: canary)
        _ = rollout.start(table)
        return rollout
    }

    /// `canary(_:_:)` with its workers ready and serving.
    static func holding(_ canary: Canary = Canary(workers: 1), _ table: inout GenerationTable) -> RolloutStateMachine {
        var rollout = Self.canary(canary, table)
        let workers = (0..<canary.workers).map { g(2, $0) }
        Self.ready(workers, in: &table)
        for worker in workers {
            _ = rollout.workerReady(worker, table)
        }
        return rollout
    }

    @Test func aCanaryTakesItsShareOnceItsWorkersAreReadyAndHoldsWithoutAdvancing() {
        var table = Self.table(workers: 3, check: Self.check)
        let canary = Canary(workers: 2, weight: 20, hold: .seconds(30), after: .promote)
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: 3, canary: canary)
        #expect(rollout.start(table) == [.report(.startingCanary(generation: 2, workers: 2, weight: 20)), .startWorkers(generation: 2, slots: [0, 1])])
        Self.ready([g(2, 0)], in: &table)
        #expect(rollout.workerReady(g(2, 0), table).isEmpty)
        Self.ready([g(2, 1)], in: &table)
        #expect(
            rollout.workerReady(g(2, 1), table) == [
                .steer, .startTimer(.canaryHold(generation: 2), after: .seconds(30)), .startTimer(.canaryCheck(generation: 2), after: .seconds(2)),
                .report(.canaryServing(generation: 2, slots: [0, 1], weight: 20, hold: .seconds(30), after: .promote)), .measureCanary,
            ])
        #expect(rollout.advance(table).isEmpty, "the canary holds: no batch starts over its slots")
        #expect(rollout.canary?.holdEnds == nil, "not measured yet")
        rollout.canaryMeasured(at: 100, steered: [1: 40, 2: 2])
        rollout.canaryMeasured(at: 200, steered: nil)
        #expect(rollout.canary?.holdEnds == 130, "measured once, when it took its share")
        #expect(rollout.canary?.steeredThen == [1: 40, 2: 2])
    }

    @Test func promoteWhileTheCanaryStartsIsRefusedAndChangesNothing() {
        let table = Self.table(workers: 3)
        var rollout = Self.canary(Canary(workers: 1), table)
        #expect(rollout.commandRefusal(promoting: true) == "the canary of generation 2 is not ready yet")
        #expect(rollout.commandRefusal(promoting: false) == nil, "a canary still starting can be rolled back")
        let before = rollout
        #expect(rollout.promote(table).isEmpty)
        #expect(rollout == before)
    }

    @Test func aRollbackWhileTheCanaryGetsReadyStopsItAndItsLateReadyChangesNothing() {
        var table = Self.table(workers: 3)
        var rollout = Self.canary(Canary(workers: 1, hold: .seconds(5), after: .promote), table)
        #expect(
            rollout.rollbackRequested(table) == [
                .cancelTimer(.canaryHold(generation: 2)), .stopWorkers(generation: 2, slots: [0]),
                .rolledBack("rolled back by batonctl rollback", planned: true),
            ])
        Self.ready([g(2, 0)], in: &table)
        #expect(rollout.workerReady(g(2, 0), table).isEmpty, "the worker is out of its slot and never takes a share")
        #expect(rollout.holdEnded(2, table).isEmpty)
        #expect(rollout.rollbackRequested(table).isEmpty, "no canary holds any more")
        #expect(rollout.advance(table) == [.gaveBack])
    }

    @Test func aCanaryWorkerThatCrashesLeavesTheRotationAndTheCanaryRollsBack() {
        var table = Self.table(workers: 4, check: Self.check)
        var rollout = Self.holding(Canary(workers: 2, hold: .seconds(60), after: .promote), &table)
        let exit = rollout.exited(.init(id: g(2, 1), state: .ready), .signaled(9))
        #expect(exit.leavesRotation)
        #expect(exit.reason == "slot 1: worker g2/s1 killed by SIGKILL while the canary held")
        #expect(
            rollout.fail(exit.reason, table) == [
                .cancelTimer(.canaryHold(generation: 2)), .cancelTimer(.canaryCheck(generation: 2)), .handOver(slots: [0, 1], from: 2),
                .rolledBack("slot 1: worker g2/s1 killed by SIGKILL while the canary held"),
            ])
        #expect(rollout.canary == nil)
    }

    @Test func aCheckResultOrTheHoldAfterThePromotionChangesNothing() {
        var table = Self.table(workers: 3, check: Self.check)
        var rollout = Self.holding(Canary(workers: 1, hold: .seconds(5), after: .rollback), &table)
        #expect(rollout.checkDue(2, table) == [.runCanaryCheck(g(2, 0), Self.check, timeout: .seconds(2))])
        #expect(
            rollout.promote(table) == [
                .cancelTimer(.canaryHold(generation: 2)), .cancelTimer(.canaryCheck(generation: 2)),
                .report(.promoted(generation: 2, strategy: .rolling)), .handOver(slots: [0], from: 1),
                .report(.replacedSlots(generation: 2, slots: [0], replaced: 1, of: 3)),
            ])
        #expect(rollout.checkResult(2, .failed("exited with status 1"), table).isEmpty)
        #expect(rollout.checkDue(2, table).isEmpty)
        #expect(rollout.holdEnded(2, table).isEmpty, "the hold's rollback does not undo a promotion")
        #expect(rollout.failure == nil)
        #expect(rollout.replaced == [0])
    }

    @Test func aCheckResultAfterTheRollbackChangesNothing() {
        var table = Self.table(workers: 3, check: Self.check)
        var rollout = Self.holding(Canary(workers: 1), &table)
        _ = rollout.rollbackRequested(table)
        #expect(rollout.checkResult(2, .failed("exited with status 1"), table).isEmpty)
        #expect(rollout.checkResult(2, .passed, table).isEmpty)
        #expect(rollout.checkDue(2, table).isEmpty)
    }

    @Test func promoteWhileTheNextBatchStartsChangesNothing() {
        var table = Self.table(workers: 3)
        var rollout = Self.holding(Canary(workers: 1), &table)
        _ = rollout.promote(table)
        Self.gone([g(1, 0)], in: &table)
        #expect(rollout.advance(table).first == .startWorkers(generation: 2, slots: [1]))
        #expect(rollout.commandRefusal(promoting: true) == "no canary holds")
        #expect(rollout.promote(table).isEmpty)
        #expect(rollout.batchSlots == [1])
    }

    @Test func promotingAllAtOnceEndsTheRollout() {
        var table = Self.table(workers: 3, strategy: .allAtOnce)
        var rollout = Self.holding(Canary(workers: 1), &table)
        #expect(rollout.promote(table) == [.report(.promoted(generation: 2, strategy: .allAtOnce)), .promotedAllAtOnce])
    }

    @Test func theHealthCheckRollsBackAfterItsFailuresInARow() {
        var table = Self.table(workers: 3, check: Self.check)
        var rollout = Self.holding(Canary(workers: 1), &table)
        let again: [RolloutAction] = [.startTimer(.canaryCheck(generation: 2), after: .seconds(2))]
        #expect(rollout.checkResult(2, .failed("exited with status 1"), table) == again)
        #expect(rollout.checkResult(2, .passed, table) == again)
        #expect(rollout.checkResult(2, .failed("exited with status 1"), table) == again)
        #expect(rollout.checkResult(3, .failed("exited with status 1"), table).isEmpty, "another generation's result")
        #expect(
            rollout.checkResult(2, .failed("exited with status 2"), table).last
                == .rolledBack("canary health check \"exec:test ! -e /tmp/bad\" failed 2 times in a row: exited with status 2"))
    }

    @Test func aCanaryRequestIsCheckedInOrder() {
        let table = Self.table(workers: 3)
        let serving = table.generation(1)
        func refusal(_ workers: Int, weight: Int? = nil, hold: String? = nil, after: String? = nil, alone: Bool = true) -> String? {
            if case .failure(let refusal) = RolloutStateMachine.canary(
                workers: workers, weight: weight, hold: hold, after: after, servingAlone: alone ? serving : nil)
            {
                return refusal.reason
            }
            return nil
        }
        #expect(
            refusal(1, weight: 0, alone: false)
                == "a canary starts only while one generation serves alone; ask again once the reload under way is over")
        #expect(
            refusal(3, weight: 0) == "a canary is 1 to 2 workers (the service has 3 slots, and at least one old worker serves beside it), got 3")
        #expect(refusal(1, weight: 100, hold: "x") == "a canary's weight is 1 to 99 percent, got 100")
        #expect(refusal(1, hold: "x", after: "y") == "\"hold\" must be a duration such as \"5m\", more than 0 and at most 24h, got \"x\"")
        #expect(refusal(1, hold: "25h") == "\"hold\" must be a duration such as \"5m\", more than 0 and at most 24h, got \"25h\"")
        #expect(refusal(1, after: "later") == "\"after\" must be \"promote\" or \"rollback\", got \"later\"")
        #expect(refusal(1, after: "promote") == "\"after\" needs a \"hold\": what happens at its end")
        #expect(
            RolloutStateMachine.canary(workers: 2, weight: 30, hold: "5m", after: "rollback", servingAlone: serving)
                == .success(Canary(workers: 2, weight: 30, hold: .seconds(300), after: .rollback)))
        #expect(RolloutStateMachine.canary(workers: 1, weight: nil, hold: nil, after: nil, servingAlone: serving) == .success(Canary(workers: 1)))
    }

    /// The size a canary may have is said in words that fit the service: no "1 to 1".
    @Test func aCanaryOfTheWrongSizeIsToldWhatFits() {
        func refusal(_ workers: Int, slots: Int) -> String? {
            if case .failure(let refusal) = RolloutStateMachine.canary(
                workers: workers, weight: nil, hold: nil, after: nil, servingAlone: Self.table(workers: slots).generation(1))
            {
                return refusal.reason
            }
            return nil
        }
        #expect(refusal(2, slots: 2) == "a canary of this service is 1 worker (it has 2 slots, and one old worker serves beside the canary), got 2")
        #expect(
            refusal(1, slots: 1)
                == "a canary needs a service of at least 2 slots, so that an old worker serves beside it; this one has 1 (scale it up first)")
    }
}
