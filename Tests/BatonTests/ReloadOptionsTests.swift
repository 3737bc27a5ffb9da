import Testing

@testable import Baton

/// A reload's options (strategy, batch, canary) ride with its events and hold for it alone.
@Suite struct ReloadOptionsTests {
    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    @Test func aReloadsOptionsComeBackWithItsConfigurationLoad() {
        var machine = SupervisorStateMachineTests.serving(workers: 2)
        let options = ReloadOptions(strategy: .rolling, batch: 2)
        #expect(machine.handle(.reloadRequested(1, options)).contains(.loadConfiguration(options)))
    }

    @Test func requestsThatWaitPoolTheirOptionsTheLaterOneWinning() {
        var machine = SupervisorStateMachineTests.reloading(workers: 2)
        _ = machine.handle(.reloadRequested(2, ReloadOptions(strategy: .rolling, batch: 2, canary: Canary(workers: 1))))
        _ = machine.handle(.reloadRequested(3, ReloadOptions(strategy: .allAtOnce)))
        _ = machine.handle(.reloadRequested(4))
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        _ = machine.handle(.queuesEmpty(generation: 1))
        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        let next = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(
            next.contains(.loadConfiguration(ReloadOptions(strategy: .allAtOnce, batch: nil, canary: Canary(workers: 1)))),
            "the strategy comes with its own batch; the canary asked earlier still holds")
        #expect(machine.phase == .loadingConfiguration([2, 3, 4]))
    }

    @Test func theOptionsOfAReloadThatWasRefusedOrRanAreGoneForTheNextOne() {
        var (machine, _) = CanaryReloadTests.canary()
        _ = machine.handle(.workerReady(g(2, 0)))
        let refused = machine.handle(.reloadRequested(2, ReloadOptions(strategy: .rolling, batch: 3)))
        #expect(refused.reports == [.failed("a canary of generation 2 holds: promote it (batonctl promote) or roll it back (batonctl rollback) first")])
        _ = machine.handle(.rollbackRequested)
        _ = machine.handle(.slotQueuesEmpty(g(2, 0)))
        _ = machine.handle(.workerExited(g(2, 0), .exited(0)))
        #expect(machine.generations.map(\.number) == [1])
        #expect(machine.handle(.reloadRequested(3)).contains(.loadConfiguration(.configured)))
    }

    @Test func aStopDropsTheOptionsOfTheRequestsThatWaited() {
        var machine = SupervisorStateMachineTests.reloading(workers: 1)
        _ = machine.handle(.reloadRequested(2, ReloadOptions(strategy: .rolling)))
        _ = machine.handle(.stopRequested)
        #expect(machine.pendingReloads.isEmpty)
        #expect(machine.pendingOptions == .configured)
    }

    @Test func theStrategyAndBatchAskedForReplaceTheFilesForThisReload() {
        var configuration = SupervisorStateMachineTests.configuration(workers: 4)
        configuration.workers.batch = 1
        let applied = ReloadOptions(strategy: .rolling, batch: 2).applied(to: configuration)
        #expect(applied.workers.strategy == .rolling && applied.workers.batch == 2)
        #expect(ReloadOptions(strategy: .rolling).applied(to: configuration).workers.batch == 1)
        #expect(ReloadOptions.configured.applied(to: configuration) == configuration)
    }

    /// A scale rides with its reload: a refused one leaves nothing behind, a pooled one
    /// wins over an earlier one, and it sets the number of workers.
    @Test func aScaleRidesWithItsReloadAndARefusedOneLeavesNothing() {
        var configuration = SupervisorStateMachineTests.configuration(workers: 4)
        configuration.workers.batch = 1
        #expect(ReloadOptions(workers: 6).applied(to: configuration).workers.count == 6)
        #expect(ReloadOptions(workers: 6).merging(ReloadOptions(strategy: .rolling)).workers == 6)
        #expect(ReloadOptions(workers: 6).merging(ReloadOptions(workers: 2)).workers == 2)
        var machine = SupervisorStateMachineTests.reloading(workers: 1)
        _ = machine.handle(.reloadRequested(2, ReloadOptions(workers: 3)))
        _ = machine.handle(.stopRequested)
        #expect(machine.pendingOptions == .configured)
    }
}
