import Testing

@testable import Baton

/// The parent machine's rules, driven by event sequences: starting, reloading and
/// rolling back, queued reloads, taking over, upgrading in place and stopping. Drain,
/// slot lifecycle, rotation and rollout have their own suites; the fixtures they share
/// are here.
@Suite struct SupervisorStateMachineTests {
    static func configuration(workers: Int = 2, command: String = "./server") -> Configuration {
        var settings = WorkerConfiguration(command: [command])
        settings.count = workers
        settings.readyTimeout = .seconds(5)
        settings.drainTimeout = .seconds(7)
        settings.restartDelay = .milliseconds(100)
        settings.restartDelayMax = .milliseconds(800)
        return Configuration(
            listeners: [ListenerConfiguration(name: "http", address: .tcp(host: "127.0.0.1", port: 8080))],
            workers: settings, controlSocket: "/tmp/test.sock")
    }

    /// A state machine with generation 1 serving `workers` workers.
    static func serving(workers: Int = 2) -> SupervisorStateMachine {
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(configuration(workers: workers)))
        for slot in 0..<workers {
            _ = machine.handle(.workerReady(WorkerID(generation: 1, slot: slot)))
        }
        return machine
    }

    /// `serving()` with a reload (id 1) under way: generation 2 is starting.
    static func reloading(workers: Int = 2) -> SupervisorStateMachine {
        var machine = serving(workers: workers)
        _ = machine.handle(.reloadRequested(1))
        _ = machine.handle(.configurationLoaded(configuration(workers: workers, command: "./server-v2")))
        return machine
    }

    /// `serving()` whose workers have a stall timeout.
    static func servingWithStallTimeout(workers: Int) -> SupervisorStateMachine {
        var configuration = Self.configuration(workers: workers)
        configuration.workers.stallTimeout = .seconds(2)
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(configuration))
        for slot in 0..<workers { _ = machine.handle(.workerReady(WorkerID(generation: 1, slot: slot))) }
        return machine
    }

    func g(_ generation: Int, _ slot: Int, _ start: Int = 0) -> WorkerID {
        WorkerID(generation: generation, slot: slot, start: start)
    }

    // MARK: - Start

    @Test func startSpawnsEverySlotWithAReadyTimeout() {
        var machine = SupervisorStateMachine()
        let actions = machine.handle(.start(Self.configuration(workers: 3)))
        #expect(actions.spawned == [g(1, 0), g(1, 1), g(1, 2)])
        #expect(actions.timers == [.readyTimeout(g(1, 0)), .readyTimeout(g(1, 1)), .readyTimeout(g(1, 2))])
        #expect(machine.phase == .starting)
    }

    @Test func serviceIsAnnouncedOnlyWhenEveryWorkerIsReady() {
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(Self.configuration(workers: 2)))
        #expect(!machine.handle(.workerReady(g(1, 0))).contains(.announce(.serving(generation: 1))))
        #expect(machine.handle(.workerReady(g(1, 1))).contains(.announce(.serving(generation: 1))))
        #expect(machine.phase == .running)
        #expect(machine.serving?.number == 1)
    }

    @Test func firstGenerationFailingToStartStopsBatonWithAnError() {
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(Self.configuration(workers: 2)))
        let actions = machine.handle(.workerExited(g(1, 0), .exited(1)))
        #expect(actions.signals == [Signal(g(1, 1), 15)])
        #expect(machine.phase == .stopping)
        let last = machine.handle(.workerExited(g(1, 1), .signaled(15)))
        #expect(last.contains(.exit(code: 1, reason: "worker g1/s0 exited with status 1 before it was ready")))
    }

    @Test func commandThatCannotStartFailsTheFirstGeneration() {
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(Self.configuration(workers: 1)))
        let actions = machine.handle(.workerExited(g(1, 0), .failedToStart("./server: command not found")))
        #expect(actions.contains(.exit(code: 1, reason: "worker g1/s0 could not start: ./server: command not found before it was ready")))
    }

    // MARK: - Reload

    @Test func reloadStartsTheNewGenerationAndDrainsTheOldOneOnlyWhenAllAreReady() {
        var machine = Self.serving(workers: 2)
        let asked = machine.handle(.reloadRequested(1))
        #expect(asked.contains(.loadConfiguration(.configured)))
        #expect(asked.reports == [.loadingConfiguration])

        let loaded = machine.handle(.configurationLoaded(Self.configuration(workers: 2, command: "./v2")))
        #expect(loaded.spawned == [g(2, 0), g(2, 1)])
        #expect(loaded.signals.isEmpty)

        let first = machine.handle(.workerReady(g(2, 0)))
        #expect(first.signals.isEmpty, "the old generation must serve until the whole new one is ready")
        #expect(first.reports == [.workerReady(g(2, 0), ready: 1, of: 2)])

        let second = machine.handle(.workerReady(g(2, 1)))
        #expect(second.signals.isEmpty, "the old generation first accepts what its sockets hold")
        #expect(second.contains(.steer([2: [0, 1]])))
        #expect(second.contains(.awaitEmptyQueues(generation: 1)))
        #expect(second.timers == [.drainGrace(generation: 1)])
        #expect(second.reports.last == .tookOver(generation: 2, replaced: 1))
        #expect(machine.serving?.number == 2)
        #expect(machine.generations.map(\.role) == [.leaving, .serving])

        let empty = machine.handle(.queuesEmpty(generation: 1))
        #expect(empty.signals == [Signal(g(1, 0), 15), Signal(g(1, 1), 15)])
        #expect(empty.contains(.cancelTimer(.drainGrace(generation: 1))))
        #expect(empty.timers.contains(.drainDeadline(generation: 1)))
        #expect(machine.generations.map(\.role) == [.draining, .serving])

        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        let gone = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(gone.contains(.announce(.generationGone(1))))
        #expect(gone.contains(.cancelTimer(.drainDeadline(generation: 1))))
        #expect(gone.contains { if case .retainSockets(let kept) = $0 { Array(kept.keys) == [2] } else { false } })
        #expect(machine.generations.map(\.number) == [2])
    }

    @Test func badConfigurationFailsTheReloadAndChangesNothing() {
        var machine = Self.serving()
        _ = machine.handle(.reloadRequested(1))
        let actions = machine.handle(.configurationRejected("baton.toml: workers.count = \"x\": expected an integer"))
        #expect(actions.reports == [.configurationRejected("baton.toml: workers.count = \"x\": expected an integer")])
        #expect(actions.spawned.isEmpty && actions.signals.isEmpty)
        #expect(machine.phase == .running)
        #expect(machine.serving?.number == 1)
    }

    @Test func newWorkerExitingRollsBackAndTheOldGenerationKeepsServing() {
        var machine = Self.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        let actions = machine.handle(.workerExited(g(2, 1), .exited(3)))
        #expect(actions.signals == [Signal(g(2, 0), 15)], "only the failed generation is stopped")
        #expect(actions.reports == [.rolledBack(generation: 2, reason: "worker g2/s1 exited with status 3 before it was ready")])
        #expect(machine.serving?.number == 1)
        #expect(machine.generations.map(\.role) == [.serving, .rollingBack])
        let gone = machine.handle(.workerExited(g(2, 0), .signaled(15)))
        #expect(gone.contains(.announce(.generationGone(2))))
        #expect(machine.generations.map(\.number) == [1])
    }

    @Test func readyTimeoutRollsBackAndALateReadyIsIgnored() {
        var machine = Self.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        let timeout = machine.handle(.timerFired(.readyTimeout(g(2, 1))))
        #expect(timeout.reports == [.rolledBack(generation: 2, reason: "worker g2/s1 was not ready within 5s")])
        #expect(timeout.signals == [Signal(g(2, 0), 15), Signal(g(2, 1), 15)])

        let late = machine.handle(.workerReady(g(2, 1)))
        #expect(late.isEmpty, "a worker that turned ready after its timeout must not take over")
        #expect(machine.serving?.number == 1)
    }

    @Test func staleReadyTimeoutOfAReadyWorkerDoesNothing() {
        var machine = Self.serving()
        #expect(machine.handle(.timerFired(.readyTimeout(g(1, 0)))).isEmpty)
    }

    @Test func reloadsDuringAReloadAreQueuedAndCollapseIntoOne() {
        var machine = Self.reloading()
        #expect(machine.handle(.reloadRequested(2)).reports == [.queued])
        #expect(machine.handle(.reloadRequested(3)).reports == [.queued])
        _ = machine.handle(.workerReady(g(2, 0)))
        let tookOver = machine.handle(.workerReady(g(2, 1)))
        #expect(!tookOver.contains(.loadConfiguration(.configured)), "generation 1 still drains: a third generation must wait")

        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        let drained = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(drained.filter { $0 == .loadConfiguration(.configured) }.count == 1)
        #expect(drained.contains(.reportReload([2, 3], .loadingConfiguration)))
        #expect(machine.phase == .loadingConfiguration([2, 3]))
    }

    @Test func reloadDuringARollbackWaitsForTheFailedGenerationToExit() {
        var machine = Self.reloading()
        _ = machine.handle(.workerExited(g(2, 0), .exited(1)))
        #expect(machine.handle(.reloadRequested(2)).reports == [.queued])
        let gone = machine.handle(.workerExited(g(2, 1), .signaled(15)))
        #expect(gone.contains(.loadConfiguration(.configured)))
        let loaded = machine.handle(.configurationLoaded(Self.configuration()))
        #expect(loaded.spawned == [g(3, 0), g(3, 1)])
        #expect(machine.generations.map(\.number) == [1, 3])
    }

    @Test func neverMoreThanTwoGenerationsAlive() {
        var machine = Self.serving()
        for id in 1...20 {
            _ = machine.handle(.reloadRequested(id))
            _ = machine.handle(.configurationLoaded(Self.configuration()))
            for generation in machine.generations where generation.role == .starting {
                for slot in 0..<2 { _ = machine.handle(.workerReady(g(generation.number, slot))) }
            }
            #expect(machine.generations.count <= 2)
            // Half of the old generations drain at once; the other half only later.
            if id % 2 == 0 {
                for generation in machine.generations where generation.role == .leaving || generation.role == .draining {
                    for worker in generation.workers.values { _ = machine.handle(.workerExited(worker.id, .exited(0))) }
                }
            }
            #expect(machine.generations.count <= 2)
        }
    }

    // MARK: - Steering the generation that takes over

    @Test func theFirstGenerationIsSteeredToOnceEveryWorkerIsReady() {
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(Self.configuration(workers: 2)))
        #expect(!machine.handle(.workerReady(g(1, 0))).contains { if case .steer = $0 { true } else { false } })
        let ready = machine.handle(.workerReady(g(1, 1)))
        #expect(ready.contains(.steer([1: [0, 1]])))
    }

    @Test func theNewGenerationIsSteeredToBeforeTheOldOneWaitsForItsQueues() throws {
        var machine = Self.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        let actions = machine.handle(.workerReady(g(2, 1)))
        let steer = try #require(actions.firstIndex(of: .steer([2: [0, 1]])))
        let wait = try #require(actions.firstIndex(of: .awaitEmptyQueues(generation: 1)))
        #expect(steer < wait)
    }

    @Test func aReloadAskedWhileAGenerationLeavesWaitsForIt() {
        var machine = Self.reloading()
        _ = machine.handle(.workerReady(g(2, 0)))
        _ = machine.handle(.workerReady(g(2, 1)))
        #expect(machine.handle(.reloadRequested(2)).reports == [.queued])
        _ = machine.handle(.queuesEmpty(generation: 1))
        _ = machine.handle(.workerExited(g(1, 0), .exited(0)))
        #expect(machine.handle(.workerExited(g(1, 1), .exited(0))).contains(.loadConfiguration(.configured)))
    }

    @Test func aResumedGenerationIsSteeredTo() {
        var machine = SupervisorStateMachine()
        let actions = machine.handle(.resume(Self.configuration(workers: 2), generation: 4, workers: [g(4, 0), g(4, 1)]))
        #expect(actions.contains(.steer([4: [0, 1]])))
    }

    // MARK: - Upgrade in place

    @Test func resumedGenerationServesAtOnceAndRestartsAMissingSlot() {
        var machine = SupervisorStateMachine()
        let actions = machine.handle(.resume(Self.configuration(workers: 3), generation: 7, workers: [g(7, 0, 2), g(7, 2)]))
        #expect(machine.phase == .running)
        #expect(machine.serving?.number == 7)
        #expect(machine.serving?.workers.values.map(\.state) == [.ready, .ready])
        #expect(actions.contains(.announce(.serving(generation: 7))))
        #expect(actions.contains(.startTimer(.restart(generation: 7, slot: 1), after: .zero)), "slot 1 lost its worker")
        #expect(machine.handle(.timerFired(.restart(generation: 7, slot: 1))).spawned == [g(7, 1, 1)])
        // Reloads carry on from the resumed generation.
        _ = machine.handle(.reloadRequested(1))
        #expect(machine.handle(.configurationLoaded(Self.configuration(workers: 1))).spawned == [g(8, 0)])
    }

    /// The new binary's control socket answers before the handed-over workers are
    /// resumed: a reload asked for then waits, and runs once they serve.
    @Test func aReloadAskedBeforeTheResumeRunsOnceTheResumedGenerationServes() {
        var machine = SupervisorStateMachine()
        #expect(machine.handle(.reloadRequested(1)).reports == [.queued])
        let resumed = machine.handle(.resume(Self.configuration(workers: 2), generation: 3, workers: [g(3, 0), g(3, 1)]))
        #expect(resumed.contains(.loadConfiguration(.configured)))
        #expect(machine.phase == .loadingConfiguration([1]))
        #expect(machine.pendingReloads.isEmpty)
    }

    // MARK: - Stop

    @Test func stopDrainsEverythingAndExitsWhenTheLastWorkerIsGone() {
        var machine = Self.serving()
        let stop = machine.handle(.stopRequested)
        #expect(stop.signals == [Signal(g(1, 0), 15), Signal(g(1, 1), 15)])
        #expect(stop.contains(.announce(.stopping)))
        #expect(machine.handle(.workerExited(g(1, 0), .exited(0))).isEmpty == false)
        let last = machine.handle(.workerExited(g(1, 1), .exited(0)))
        #expect(last.contains(.exit(code: 0, reason: nil)))
    }

    @Test func stopKeepsEverySocketUntilExit() {
        var machine = Self.reloading()
        _ = machine.handle(.stopRequested)
        var actions: [SupervisorAction] = []
        for worker in [g(1, 0), g(1, 1), g(2, 0), g(2, 1)] {
            actions += machine.handle(.workerExited(worker, .exited(0)))
        }
        #expect(actions.contains(.exit(code: 0, reason: nil)))
        #expect(
            !actions.contains { if case .retainSockets = $0 { true } else { false } },
            "sockets closed while stopping would reset what is queued in them")
    }

    @Test func secondStopKillsAtOnce() {
        var machine = Self.serving()
        _ = machine.handle(.stopRequested)
        let second = machine.handle(.stopRequested)
        #expect(second.signals == [Signal(g(1, 0), 9), Signal(g(1, 1), 9)])
    }

    @Test func stopDuringAReloadFailsItAndDrainsBothGenerations() {
        var machine = Self.reloading()
        _ = machine.handle(.reloadRequested(2))
        let stop = machine.handle(.stopRequested)
        #expect(stop.contains(.reportReload([1], .failed("Baton is stopping"))))
        #expect(stop.contains(.reportReload([2], .failed("Baton is stopping"))))
        #expect(Set(stop.signals) == [Signal(g(1, 0), 15), Signal(g(1, 1), 15), Signal(g(2, 0), 15), Signal(g(2, 1), 15)])
        #expect(machine.handle(.workerReady(g(2, 0))).isEmpty, "a worker of a stopping service never takes over")
        #expect(machine.handle(.reloadRequested(3)).reports == [.failed("Baton is stopping")])
    }

    @Test func configurationLoadedAfterAStopOnlyReleasesItsSockets() {
        var machine = Self.serving()
        _ = machine.handle(.reloadRequested(1))
        _ = machine.handle(.stopRequested)
        let loaded = machine.handle(.configurationLoaded(Self.configuration(workers: 4)))
        #expect(loaded.spawned.isEmpty)
        #expect(loaded.contains { if case .retainSockets = $0 { true } else { false } })
    }

    @Test func reloadAskedDuringTheFirstStartRunsOnceItServes() {
        var machine = SupervisorStateMachine()
        _ = machine.handle(.start(Self.configuration(workers: 1)))
        #expect(machine.handle(.reloadRequested(1)).reports == [.queued])
        let ready = machine.handle(.workerReady(g(1, 0)))
        #expect(ready.contains(.announce(.serving(generation: 1))))
        #expect(ready.contains(.loadConfiguration(.configured)))
    }
}
