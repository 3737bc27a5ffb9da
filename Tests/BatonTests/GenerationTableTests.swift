import Testing

@testable import Baton

/// Who is where, and the bookkeeping every decision shares, without any decision.
@Suite struct GenerationTableTests {
    static let configuration = SupervisorStateMachineTests.configuration(workers: 3)

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    @Test func generationsAreNumberedInOrderAndFoundByNumberAndWorker() {
        var table = GenerationTable()
        let first = table.add(Self.configuration)
        let second = table.add(Self.configuration)
        #expect(table.generations.map(\.number) == [1, 2])
        #expect(table.index(of: 2) == second)
        #expect(table.index(of: g(1, 2)) == first)
        #expect(table.index(of: 3) == nil)
        #expect(table.generation(1)?.number == 1)
        #expect(table.serving == nil, "a generation serves only once the machine says so")
    }

    @Test func anAdoptedGenerationIsFollowedByTheNextNumber() {
        var table = GenerationTable()
        table.adopt(SupervisorStateMachine.Generation(number: 7, configuration: Self.configuration))
        let index = table.add(Self.configuration)
        #expect(table[index].number == 8)
    }

    @Test func startingAWorkerSpawnsItWithItsReadyTimeout() {
        var table = GenerationTable()
        let index = table.add(Self.configuration)
        let actions = table.startWorker(g(1, 1), at: index)
        #expect(actions == [.spawn(g(1, 1), Self.configuration), .startTimer(.readyTimeout(g(1, 1)), after: .seconds(5))])
        #expect(table.worker(g(1, 1))?.state == .starting)
    }

    @Test func aRestartedWorkerIsTheSlotsNextStartAndTheOldIdIsNoLongerFound() {
        var table = GenerationTable()
        let index = table.add(Self.configuration)
        _ = table.startWorker(g(1, 0), at: index)
        #expect(table.restartWorker(slot: 0, at: index).spawned == [g(1, 0, 1)])
        #expect(table.restartWorker(slot: 0, at: index).spawned == [g(1, 0, 2)])
        #expect(table.worker(g(1, 0)) == nil, "a late event of an earlier start must not reach the slot's worker")
        #expect(table.worker(g(1, 0, 2)) != nil)
    }

    @Test func aWorkersTimersFollowItsState() {
        var worker = SupervisorStateMachine.Worker(id: g(1, 0))
        #expect(GenerationTable.cancelTimers(of: worker) == [.cancelTimer(.readyTimeout(g(1, 0)))])
        worker.state = .ready
        #expect(GenerationTable.cancelTimers(of: worker) == [.cancelTimer(.healthy(g(1, 0)))])
        worker.state = .draining
        #expect(GenerationTable.cancelTimers(of: worker).isEmpty)
    }

    @Test func aScheduledRestartIsCancelledOnceAndOnlyIfScheduled() {
        var table = GenerationTable()
        let index = table.add(Self.configuration)
        #expect(table.cancelRestart(slot: 1, at: index).isEmpty)
        #expect(table.scheduleRestart(slot: 1, at: index, after: .seconds(1)) == .startTimer(.restart(generation: 1, slot: 1), after: .seconds(1)))
        _ = table.scheduleRestart(slot: 0, at: index, after: .seconds(1))
        #expect(table.cancelRestart(slot: 1, at: index) == [.cancelTimer(.restart(generation: 1, slot: 1))])
        #expect(table.cancelRestart(slot: 1, at: index).isEmpty)
        _ = table.scheduleRestart(slot: 2, at: index, after: .seconds(1))
        #expect(table.cancelRestarts(at: index) == [.cancelTimer(.restart(generation: 1, slot: 0)), .cancelTimer(.restart(generation: 1, slot: 2))])
        #expect(table[index].restarting.isEmpty)
    }

    @Test func crashesInARowAreCountedBySlot() {
        var table = GenerationTable()
        let index = table.add(Self.configuration)
        #expect([table.countCrash(slot: 0, at: index), table.countCrash(slot: 0, at: index), table.countCrash(slot: 1, at: index)] == [1, 2, 1])
    }

    @Test func aRetiredWorkerLeavesItsSlotButKeepsItsGenerationAlive() {
        var table = GenerationTable()
        let index = table.add(Self.configuration)
        _ = table.startWorker(g(1, 0), at: index)
        table[index].role = .draining
        #expect(table.retire(slot: 0, at: index, departing: true)?.id == g(1, 0))
        #expect(table.retire(slot: 0, at: index) == nil, "an empty slot has nobody to retire")
        #expect(table[index].workers.isEmpty)
        #expect(table[index].departing == [g(1, 0)])
        #expect(table.removeFinished().isEmpty, "a retired worker is still alive")
        table[index].retired = [:]
        #expect(table.removeFinished().map(\.number) == [1])
        #expect(table.isEmpty)
    }

    @Test func onlyGenerationsOutOfServiceWithNoWorkerAreFinished() {
        var table = GenerationTable()
        for role in [SupervisorStateMachine.Generation.Role.starting, .serving, .leaving, .draining, .rollingBack] {
            table[table.add(Self.configuration)].role = role
        }
        #expect(table.removeFinished().map(\.number) == [3, 4, 5])
        #expect(table.generations.map(\.number) == [1, 2])
    }

    @Test func updatesReachOnlyTheWorkerStillInItsSlot() {
        var table = GenerationTable()
        let index = table.add(Self.configuration)
        _ = table.startWorker(g(1, 0), at: index)
        _ = table.restartWorker(slot: 0, at: index)
        table.update(g(1, 0)) { $0.status = "stale" }
        table.update(g(1, 0, 1)) { $0.status = "serving" }
        #expect(table.worker(g(1, 0, 1))?.status == "serving")
    }
}
