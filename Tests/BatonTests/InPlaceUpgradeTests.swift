import Testing

@testable import Baton

/// When `batonctl upgrade` is refused, decided without executing anything.
@Suite struct InPlaceUpgradeTests {
    typealias Machine = SupervisorStateMachineTests

    func refusal(_ machine: SupervisorStateMachine, executable: String = "/bin/sh") -> String? {
        InPlaceUpgrade.refusal(StatusProjection(machine: machine, workers: WorkerTable(), reloads: []), executable: executable)
    }

    @Test func oneGenerationWithEveryWorkerReadyMayUpgrade() {
        #expect(refusal(Machine.serving(workers: 2)) == nil)
    }

    @Test func aReloadUnderWayIsRefused() {
        #expect(refusal(Machine.reloading(workers: 2)) == "Baton is reloading with 2 generation(s); upgrade once one generation serves alone")
    }

    @Test func aRestartingSlotIsRefused() {
        var machine = Machine.serving(workers: 2)
        _ = machine.handle(.workerExited(WorkerID(generation: 1, slot: 1), .exited(1)))
        #expect(refusal(machine) == "slot 1 is restarting; upgrade once every worker is ready")
        _ = machine.handle(.timerFired(.restart(generation: 1, slot: 1)))
        #expect(refusal(machine) == "worker g1/s1#1 is starting; upgrade once every worker is ready")
    }

    @Test func prefixedOutputIsRefused() {
        var configuration = Machine.configuration(workers: 1)
        configuration.workers.output = .prefix
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(configuration))
        _ = machine.handle(.workerReady(WorkerID(generation: 1, slot: 0)))
        #expect(refusal(machine)?.contains("output = \"prefix\"") == true)
    }

    @Test func aMissingExecutableIsRefusedWithTheReason() {
        let reason = refusal(Machine.serving(workers: 1), executable: "/nonexistent/baton")
        #expect(reason == "/nonexistent/baton is not an executable file: access: No such file or directory")
    }
}
