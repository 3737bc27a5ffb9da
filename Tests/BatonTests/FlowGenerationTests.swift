import Testing

@testable import Baton

/// A generation whose UDP listener keeps flows (Docs/steering.md, "UDP flows"), in the
/// state machine's terms: replaced, it drains at once (its flows keep reaching its
/// sockets, which never settle empty), its sockets stay until its workers exit, it is
/// killed at its drain timeout, and it does not hold up the next reload.
@Suite struct FlowGenerationTests {
    static func configuration(flows: Flows, command: String = "./server") -> Configuration {
        var configuration = SupervisorStateMachineTests.configuration(workers: 2, command: command)
        var listener = ListenerConfiguration(name: "quic", address: .udp(host: "127.0.0.1", port: 4433))
        listener.flowMode = flows
        configuration.listeners = [listener]
        return configuration
    }

    func g(_ generation: Int, _ slot: Int) -> WorkerID {
        WorkerID(generation: generation, slot: slot)
    }

    /// Generation 1 serving, then `reloads` reloads each taken over, all of `flows`.
    static func reloaded(_ reloads: Int, flows: Flows) -> (SupervisorStateMachine, [[SupervisorAction]]) {
        var machine = SupervisorStateMachine()
        var takeOvers: [[SupervisorAction]] = []
        _ = machine.handle(.start(configuration(flows: flows)))
        for slot in 0..<2 { _ = machine.handle(.workerReady(WorkerID(generation: 1, slot: slot))) }
        for reload in 1...reloads {
            _ = machine.handle(.reloadRequested(ReloadRequestID(reload)))
            _ = machine.handle(.configurationLoaded(configuration(flows: flows, command: "./v\(reload + 1)")))
            _ = machine.handle(.workerReady(WorkerID(generation: reload + 1, slot: 0)))
            takeOvers.append(machine.handle(.workerReady(WorkerID(generation: reload + 1, slot: 1))))
        }
        return (machine, takeOvers)
    }

    @Test func aReplacedGenerationWithFlowsDrainsAtOnceAndKeepsItsSocketsUntilItsWorkersExit() {
        var (machine, takeOvers) = Self.reloaded(1, flows: .tuple)
        let takeOver = takeOvers[0]
        #expect(takeOver.contains(.steer([2: [0, 1]])))
        #expect(!takeOver.contains(.awaitEmptyQueues(generation: 1)), "its sockets keep receiving its flows")
        #expect(takeOver.signals == [Signal(g(1, 0), 15), Signal(g(1, 1), 15)])
        #expect(takeOver.timers.contains(.drainDeadline(generation: 1)))
        #expect(!takeOver.contains { if case .retainSockets = $0 { true } else { false } }, "its sockets stay open")
        #expect(machine.generations.map(\.role) == [.draining, .serving])

        let first = machine.handle(.workerExited(g(1, 0), .exited(0)))
        #expect(!first.contains { if case .retainSockets = $0 { true } else { false } }, "a worker of it is alive")
        let gone = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(gone.contains { if case .retainSockets(let kept) = $0 { Array(kept.keys) == [2] } else { false } })
    }

    @Test func aGenerationWithFlowsIsKilledAtItsDrainTimeout() {
        var (machine, _) = Self.reloaded(1, flows: .quic)
        let deadline = machine.handle(.timerFired(.drainDeadline(generation: 1)))
        #expect(deadline.signals == [Signal(g(1, 0), 9), Signal(g(1, 1), 9)])
    }

    @Test func generationsWithFlowsDrainSideBySideWithoutHoldingUpReloads() {
        let (machine, takeOvers) = Self.reloaded(3, flows: .quic)
        #expect(takeOvers.allSatisfy { $0.reports.last.map { if case .tookOver = $0 { true } else { false } } ?? false })
        #expect(machine.generations.map(\.role) == [.draining, .draining, .draining, .serving])
        #expect(machine.pendingReloads.isEmpty)
    }

    @Test func withoutFlowsAReloadWaitsForTheDrainingGeneration() {
        var (machine, _) = Self.reloaded(1, flows: .none)
        #expect(machine.generations.map(\.role) == [.leaving, .serving])
        let asked = machine.handle(.reloadRequested(2))
        #expect(asked.reports == [.queued])
    }

    @Test func aRollingReloadOfFlowsGoesAllAtOnce() {
        var (machine, _) = Self.reloaded(1, flows: .tuple)
        var rolling = Self.configuration(flows: .tuple, command: "./v3")
        rolling.workers.strategy = .rolling
        _ = machine.handle(.reloadRequested(2))
        let loaded = machine.handle(.configurationLoaded(rolling))
        #expect(loaded.reports.first == .allAtOnceInstead("a listener keeps UDP flows, which stay with their generation as a whole"))
        #expect(loaded.spawned == [g(3, 0), g(3, 1)])
    }
}
