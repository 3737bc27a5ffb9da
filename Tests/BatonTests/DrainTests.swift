import Testing

@testable import Baton

/// How workers go (`+Drain`): a replaced generation leaves the rotation, settles, gets
/// the drain signal and, at its deadline, SIGKILL; a single departing worker the same
/// way; in the nasty orders of workers that go while they are being taken out.
@Suite struct DrainTests {
    typealias Machine = SupervisorStateMachineTests

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    @Test func oldWorkerIgnoringTheDrainSignalIsKilledAtTheDeadline() {
        var machine = Machine.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        _ = machine.handle(.queuesEmpty(generation: 1))
        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        let deadline = machine.handle(.timerFired(.drainDeadline(generation: 1)))
        #expect(deadline.signals == [Signal(g(1, 1), 9)])
        let gone = machine.handle(.workerExited(g(1, 1), .signaled(9)))
        #expect(gone.contains(.announce(.generationGone(1))))
        #expect(gone.spawned.isEmpty, "a drained worker is never restarted")
    }

    @Test func workerDyingWhileItsGenerationDrainsIsNotRestarted() {
        var machine = Machine.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        let died = machine.handle(.workerExited(g(1, 1), .signaled(11)))
        #expect(died.spawned.isEmpty)
        #expect(!died.timers.contains { if case .restart = $0 { true } else { false } })
    }

    @Test func crashDuringTheOldGenerationsRestartDelayIsForgottenWhenItIsReplaced() {
        var machine = Machine.serving()
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        _ = machine.handle(.reloadRequested(1))
        _ = machine.handle(.configurationLoaded(Machine.configuration()))
        _ = machine.handle(.workerReady(g(2, 0)))
        let tookOver = machine.handle(.workerReady(g(2, 1)))
        #expect(tookOver.contains(.cancelTimer(.restart(generation: 1, slot: 0))))
        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 0))).isEmpty)
    }

    @Test func aLeavingGenerationWhoseQueuesNeverEmptyDrainsAtTheGrace() {
        var machine = Machine.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        let grace = machine.handle(.timerFired(.drainGrace(generation: 1)))
        #expect(grace.signals == [Signal(g(1, 0), 15), Signal(g(1, 1), 15)])
        #expect(grace.timers == [.drainDeadline(generation: 1)])
        #expect(machine.handle(.queuesEmpty(generation: 1)).isEmpty, "a late answer changes nothing")
    }

    @Test func stopWhileAGenerationLeavesDrainsItAtOnce() {
        var machine = Machine.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        let stop = machine.handle(.stopRequested)
        #expect(Set(stop.signals) == [Signal(g(1, 0), 15), Signal(g(1, 1), 15), Signal(g(2, 0), 15), Signal(g(2, 1), 15)])
        #expect(stop.contains(.cancelTimer(.drainGrace(generation: 1))))
        #expect(machine.handle(.timerFired(.drainGrace(generation: 1))).isEmpty)
    }

    @Test func aLeavingGenerationWhoseWorkersAllExitIsGone() {
        var machine = Machine.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        let first = machine.handle(.workerExited(g(1, 0), .signaled(9)))
        #expect(
            first.contains(.evacuate(generation: 1, slot: 0, forNextWorker: false)),
            "what its socket holds goes to generation 2 now, and it listens no more")
        #expect(first.spawned.isEmpty)
        let last = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(last.contains(.announce(.generationGone(1))))
        #expect(last.contains(.cancelTimer(.drainGrace(generation: 1))))
        #expect(machine.generations.map(\.number) == [2])
    }

    @Test func aStalledWorkerOfAReplacedGenerationIsSignalledOnceAndKilledWithIt() {
        var machine = Machine.servingWithStallTimeout(workers: 2)
        #expect(machine.handle(.workerStalled(g(1, 0))).signals == [Signal(g(1, 0), 15)])
        _ = machine.handle(.reloadRequested(1))
        _ = machine.handle(.configurationLoaded(Machine.configuration(workers: 2, command: "./server-v2")))
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
        #expect(died.contains(.evacuate(generation: 1, slot: 0, forNextWorker: true)), "a rollback would give slot 0 back")
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
