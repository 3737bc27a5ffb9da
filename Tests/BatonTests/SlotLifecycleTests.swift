import Testing

@testable import Baton

/// A slot's life (`+SlotLifecycle`): crash and restart with a doubling delay, the
/// healthy timer, stalls, a serving worker's socket leaving the rotation, and late
/// events of a slot's earlier starts.
@Suite struct SlotLifecycleTests {
    typealias Machine = SupervisorStateMachineTests

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    @Test func lateEventsOfAnEarlierStartDoNotReachTheSlotsNewWorker() {
        var machine = Machine.serving(workers: 2)
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 0))).spawned == [g(1, 0, 1)])
        #expect(machine.handle(.workerReady(g(1, 0))).isEmpty)
        #expect(machine.handle(.workerExited(g(1, 0), .exited(1))).isEmpty)
        #expect(machine.handle(.timerFired(.readyTimeout(g(1, 0)))).isEmpty)
        #expect(machine.serving?.workers[0] == SupervisorStateMachine.Worker(id: g(1, 0, 1)))
        #expect(machine.serving?.crashes[0] == 1)
    }

    @Test func theHealthyTimerOfAnEarlierStartDoesNotForgetTheSlotsCrashes() {
        var machine = Machine.serving(workers: 2)
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

    @Test func crashedWorkerIsRestartedInItsSlotWithDoublingDelay() {
        var machine = Machine.serving()
        let delays = (1...6).map { start -> Duration? in
            let crashed = g(1, 0, start - 1)
            let actions = machine.handle(.workerExited(crashed, .exited(1)))
            #expect(actions.signals.isEmpty, "other slots are not touched")
            let restart = machine.handle(.timerFired(.restart(generation: 1, slot: 0)))
            #expect(restart.spawned == [g(1, 0, start)])
            return actions.compactMap { if case .startTimer(.restart, let delay) = $0 { delay } else { nil } }.first
        }
        #expect(
            delays == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                .milliseconds(800), .milliseconds(800),
            ])
        #expect(machine.serving?.isCrashLooping(slot: 0) == true)
        #expect(machine.serving?.isCrashLooping(slot: 1) == false)
        #expect(machine.serving?.workers[1]?.state == .ready)
    }

    @Test func aStalledWorkerLeavesTheRotationDrainsAndItsSlotRestarts() {
        var machine = Machine.servingWithStallTimeout(workers: 3)
        let stalled = machine.handle(.workerStalled(g(1, 1)))
        let steer = stalled.firstIndex(of: .steer([1: [0, 2]]))
        let evacuate = stalled.firstIndex(of: .evacuate(generation: 1, slot: 1))
        let drain = stalled.firstIndex(of: .signal(g(1, 1), 15))
        #expect(steer != nil && evacuate != nil && drain != nil)
        if let steer, let evacuate, let drain {
            #expect(steer < evacuate && evacuate < drain, "out of rotation, then its queue moves, then it is told to drain")
        }
        #expect(stalled.contains(.announce(.workerStalled(g(1, 1), after: .seconds(2), restartAfter: .milliseconds(100)))))
        #expect(stalled.timers == [.retiredDeadline(g(1, 1)), .restart(generation: 1, slot: 1)])
        #expect(machine.serving?.retired[g(1, 1)]?.state == .draining)
        #expect(machine.handle(.workerStalled(g(1, 1))).isEmpty, "a retired worker is not handled twice")

        #expect(machine.handle(.timerFired(.restart(generation: 1, slot: 1))).spawned == [g(1, 1, 1)])
        #expect(machine.handle(.workerReady(g(1, 1, 1))).contains(.steer([1: [0, 1, 2]])))
        let exited = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(exited.contains(.cancelTimer(.retiredDeadline(g(1, 1)))))
        #expect(!exited.contains { if case .steer = $0 { true } else { false } }, "its exit does not touch the rotation")
        #expect(!exited.contains { if case .startTimer(.restart, _) = $0 { true } else { false } }, "nor restart its slot again")
        #expect(machine.serving?.retired.isEmpty == true)
        #expect(machine.serving?.workers[1]?.id == g(1, 1, 1))
    }

    @Test func aRetiredWorkerThatNeverWakesIsKilledAtItsDrainTimeout() {
        var machine = Machine.servingWithStallTimeout(workers: 2)
        _ = machine.handle(.workerStalled(g(1, 0)))
        #expect(machine.handle(.timerFired(.retiredDeadline(g(1, 0)))).signals == [Signal(g(1, 0), 9)])
        #expect(machine.handle(.timerFired(.retiredDeadline(g(1, 0)))).isEmpty)
    }

    @Test func aGenerationWithARetiredWorkerIsGoneOnlyOnceItExits() {
        var machine = Machine.servingWithStallTimeout(workers: 1)
        let stalled = machine.handle(.workerStalled(g(1, 0)))
        #expect(!stalled.contains { if case .steer = $0 { true } else { false } }, "the rotation is never emptied")
        #expect(!stalled.contains(.evacuate(generation: 1, slot: 0)), "nowhere to move its queue to")
        _ = machine.handle(.stopRequested)
        #expect(machine.phase == .stopping)
        let second = machine.handle(.stopRequested)
        #expect(second.signals == [Signal(g(1, 0), 9)], "a second stop kills the retired worker too")
        let exited = machine.handle(.workerExited(g(1, 0), .signaled(9)))
        #expect(exited.contains(.exit(code: 0, reason: nil)))
    }

    @Test func aStallIsIgnoredWithoutATimeout() {
        var machine = Machine.serving()
        #expect(machine.handle(.workerStalled(g(1, 0))).isEmpty, "no stall_timeout: nothing happens")
    }

    @Test func slotThatServedLongEnoughForgetsItsCrashes() {
        var machine = Machine.serving()
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 0)))
        let ready = machine.handle(.workerReady(g(1, 0, 1)))
        #expect(ready.contains(.startTimer(.healthy(g(1, 0, 1)), after: SupervisorStateMachine.healthyAfter)))
        _ = machine.handle(.timerFired(.healthy(g(1, 0, 1))))
        #expect(machine.serving?.crashes[0] == nil)
    }

    @Test func restartedWorkerThatNeverGetsReadyIsKilledAndRestartedAgain() {
        var machine = Machine.serving()
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 0)))
        let timeout = machine.handle(.timerFired(.readyTimeout(g(1, 0, 1))))
        #expect(timeout.signals == [Signal(g(1, 0, 1), 9)])
        let exited = machine.handle(.workerExited(g(1, 0, 1), .signaled(9)))
        #expect(exited.timers.contains(.restart(generation: 1, slot: 0)))
        #expect(machine.serving?.number == 1)
    }

    @Test func aServingWorkerThatDiesLeavesTheRotationBeforeItsSocketIsEvacuated() throws {
        var machine = Machine.serving(workers: 3)
        let died = machine.handle(.workerExited(g(1, 1), .exited(1)))
        let steer = try #require(died.firstIndex(of: .steer([1: [0, 2]])))
        let evacuate = try #require(died.firstIndex(of: .evacuate(generation: 1, slot: 1, forNextWorker: true)))
        #expect(steer < evacuate, "a socket still in rotation must not be emptied")
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 1)))
        let back = machine.handle(.workerReady(g(1, 1, 1)))
        #expect(back.contains(.steer([1: [0, 1, 2]])), "the slot returns once its new worker is ready")
    }

    @Test func theLastServingWorkerDyingLeavesTheRotationAsItWas() {
        var machine = Machine.serving(workers: 1)
        let died = machine.handle(.workerExited(g(1, 0), .exited(1)))
        #expect(!died.contains { if case .steer = $0 { true } else { false } }, "an empty rotation lets the kernel pick any socket")
        #expect(!died.contains { if case .evacuate = $0 { true } else { false } }, "there is no live socket to move to")
    }

    @Test func aRestartedWorkerThatNeverGotReadyIsNotEvacuated() {
        var machine = Machine.serving(workers: 2)
        _ = machine.handle(.workerExited(g(1, 0), .exited(1)))
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 0)))
        let again = machine.handle(.workerExited(g(1, 0, 1), .exited(1)))
        #expect(!again.contains { if case .evacuate = $0 { true } else { false } }, "its slot was out of rotation")
    }
}
