import Testing

@testable import Baton

/// Slot lifecycle (crash, restart, stall) and drain (leave, settle, signal, kill,
/// depart) in the nasty orders: late events of earlier starts, and workers that go
/// while they are being taken out.
@Suite struct DrainAndSlotLifecycleTests {
    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    @Test func lateEventsOfAnEarlierStartDoNotReachTheSlotsNewWorker() {
        var machine = SupervisorStateMachineTests.serving(workers: 2)
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 0))).spawned == [g(1, 0, 1)])
        #expect(machine.handle(.workerReady(g(1, 0))).isEmpty)
        #expect(machine.handle(.workerExited(g(1, 0), .exited(1))).isEmpty)
        #expect(machine.handle(.timerFired(.readyTimeout(g(1, 0)))).isEmpty)
        #expect(machine.serving?.workers[0] == SupervisorStateMachine.Worker(id: g(1, 0, 1)))
        #expect(machine.serving?.crashes[0] == 1)
    }

    @Test func theHealthyTimerOfAnEarlierStartDoesNotForgetTheSlotsCrashes() {
        var machine = SupervisorStateMachineTests.serving(workers: 2)
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 0)))
        #expect(machine.handle(.workerReady(g(1, 0, 1))).timers == [.healthy(g(1, 0, 1))])
        let crashed = machine.handle(.workerExited(g(1, 0, 1), .exited(1)))
        #expect(crashed.contains(.cancelTimer(.healthy(g(1, 0, 1)))))
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 0)))
        _ = machine.handle(.workerReady(g(1, 0, 2)))
        _ = machine.handle(.timerFired(.healthy(g(1, 0, 1))))
        #expect(machine.serving?.crashes[0] == 2, "the timer fired before its cancellation reached it")
        _ = machine.handle(.timerFired(.healthy(g(1, 0, 2))))
        #expect(machine.serving?.crashes[0] == nil)
    }

    @Test func aStalledWorkerOfAReplacedGenerationIsSignalledOnceAndKilledWithIt() {
        var machine = SupervisorStateMachineTests.servingWithStallTimeout(workers: 2)
        #expect(machine.handle(.workerStalled(g(1, 0))).signals == [Signal(g(1, 0), 15)])
        _ = machine.handle(.reloadRequested(1))
        _ = machine.handle(.configurationLoaded(SupervisorStateMachineTests.configuration(workers: 2, command: "./server-v2")))
        _ = machine.handle(.workerReady(g(2, 0)))
        let tookOver = machine.handle(.workerReady(g(2, 1)))
        #expect(tookOver.contains(.cancelTimer(.restart(generation: 1, slot: 0))), "a replaced generation's slot does not restart")
        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 0))).isEmpty)
        let drained = machine.handle(.queuesEmpty(generation: 1))
        #expect(drained.signals == [Signal(g(1, 1), 15)], "the stalled worker had its drain signal already")
        let killed = machine.handle(.timerFired(.drainDeadline(generation: 1)))
        #expect(Set(killed.signals) == [Signal(g(1, 0), 9), Signal(g(1, 1), 9)])
        #expect(killed.contains(.cancelTimer(.retiredDeadline(g(1, 0)))))
        _ = machine.handle(.workerExited(g(1, 0), .signaled(9)))
        let gone = machine.handle(.workerExited(g(1, 1), .signaled(9)))
        #expect(gone.contains(.announce(.generationGone(1))))
        #expect(machine.generations.map(\.number) == [2])
    }

    @Test func aDepartingWorkerThatDiesBeforeItsSlotEmptiesIsEvacuatedAndTheNextBatchStarts() {
        var (machine, _) = RollingReloadTests.rollingOut(workers: 2, batch: 1)
        let ready = machine.handle(.workerReady(g(2, 0)))
        #expect(ready.contains(.awaitEmptySlot(g(1, 0))))
        #expect(ready.timers.contains(.departureGrace(g(1, 0))))
        let died = machine.handle(.workerExited(g(1, 0), .signaled(9)))
        #expect(died.contains(.cancelTimer(.departureGrace(g(1, 0)))))
        #expect(died.contains(.evacuate(generation: 1, slot: 0)))
        #expect(died.spawned == [g(2, 1)])
        #expect(machine.handle(.slotQueuesEmpty(g(1, 0))).isEmpty, "too late: it is gone")
        #expect(machine.handle(.timerFired(.departureGrace(g(1, 0)))).isEmpty)
    }

    @Test func aStopWhileAWorkerDepartsSignalsEveryWorkerOnceAndEvacuatesNothing() {
        var (machine, _) = RollingReloadTests.rollingOut(workers: 2, batch: 1)
        _ = machine.handle(.workerReady(g(2, 0)))
        let stopping = machine.handle(.stopRequested)
        #expect(Set(stopping.signals) == [Signal(g(1, 0), 15), Signal(g(1, 1), 15), Signal(g(2, 0), 15)])
        #expect(stopping.contains(.cancelTimer(.departureGrace(g(1, 0)))))
        #expect(machine.handle(.slotQueuesEmpty(g(1, 0))).isEmpty, "it had its drain signal")
        let exits = [g(1, 0), g(1, 1), g(2, 0)].flatMap { machine.handle(.workerExited($0, .exited(0))) }
        #expect(!exits.contains { if case .evacuate = $0 { true } else { false } }, "stopping keeps every queue for the next start")
        #expect(exits.last == .exit(code: 0, reason: nil))
    }
}
