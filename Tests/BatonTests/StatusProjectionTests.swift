import Testing

@testable import Baton

/// What `batonctl status` and systemd's `STATUS=` say for a given state.
@Suite struct StatusProjectionTests {
    typealias Machine = SupervisorStateMachineTests

    func projection(
        _ machine: SupervisorStateMachine, pids: [WorkerID: Int32] = [:],
        reloads: [StatusReport.ReloadRecord] = []
    ) -> StatusProjection {
        var workers = WorkerTable()
        for (worker, pid) in pids {
            workers.add(worker, .init(pid: pid, started: 10, notifySocket: nil))
        }
        return StatusProjection(machine: machine, workers: workers, reloads: reloads)
    }

    @Test func aServingGenerationShowsItsWorkersWithPidsAndUptimes() {
        let g1s0 = WorkerID(generation: 1, slot: 0)
        let g1s1 = WorkerID(generation: 1, slot: 1)
        let status = projection(Machine.serving(workers: 2), pids: [g1s0: 500, g1s1: 501])
        let report = status.report(
            pid: 42, configurationName: "command line", listeners: [], now: 13.5,
            scaledTo: nil, upgrades: 0, upgradeError: nil)
        #expect(report.phase == .running)
        #expect(report.command == ["./server"])
        #expect(report.generations.map(\.number) == [1])
        #expect(report.generations[0].role == .serving)
        #expect(report.generations[0].workers.map(\.pid) == [500, 501])
        #expect(report.generations[0].workers.map(\.state) == [.ready, .ready])
        #expect(report.generations[0].workers.map(\.uptime) == [3.5, 3.5])
        #expect(status.line == "generation 1: 2/2 ready")
    }

    @Test func aReloadShowsBothGenerationsAndTheirRoles() {
        var machine = Machine.reloading(workers: 2)
        _ = machine.handle(.workerReady(WorkerID(generation: 2, slot: 0)))
        let report = projection(machine).report(
            pid: 1, configurationName: "x", listeners: [], now: 0,
            scaledTo: 3, upgrades: 1, upgradeError: nil)
        #expect(report.phase == .reloading)
        #expect(report.generations.map(\.role) == [.serving, .starting])
        #expect(report.generations[1].workers.map(\.state) == [.ready, .starting])
        #expect(report.generations[1].workers.allSatisfy { $0.pid == nil && $0.uptime == nil }, "not in the worker table")
        #expect(report.scaledTo == 3 && report.upgrades == 1)
        #expect(report.command == ["./server-v2"], "the newest configuration's command")
    }

    @Test func aDrainingWorkerThatSaidStoppingShowsAsStopping() {
        var machine = Machine.reloading(workers: 1)
        _ = machine.handle(.workerReady(WorkerID(generation: 2, slot: 0)))
        _ = machine.handle(.queuesEmpty(generation: 1))
        _ = machine.handle(.workerStopping(WorkerID(generation: 1, slot: 0)))
        let status = projection(machine)
        let report = status.report(
            pid: 1, configurationName: "x", listeners: [], now: 0,
            scaledTo: nil, upgrades: 0, upgradeError: nil)
        #expect(report.generations.map(\.role) == [.draining, .serving])
        #expect(report.generations[0].workers.map(\.state) == [.stopping])
        #expect(status.line == "generation 2: 1/1 ready; 1 draining")
    }

    @Test func theLineNamesTheLastFinishedReload() {
        var record = StatusReport.ReloadRecord(started: 1, result: .rolledBack)
        record.finished = 2
        let status = projection(Machine.serving(workers: 1), reloads: [record])
        #expect(status.line == "generation 1: 1/1 ready; last reload rolled-back")
        record.reason = "worker g2/s0 exited with status 3 before it was ready; its last output: boom"
        let why = projection(Machine.serving(workers: 1), reloads: [record])
        #expect(
            why.line == "generation 1: 1/1 ready; last reload rolled-back: worker g2/s0 exited with status 3 before it was ready; its last output: boom",
            "STATUS= says why the last reload failed")
        record.reason = String(repeating: "x", count: 1000)
        #expect(projection(Machine.serving(workers: 1), reloads: [record]).line.count < 400, "a long reason is cut")
        let running = projection(Machine.serving(workers: 1), reloads: [.init(started: 3, result: .running)])
        #expect(running.line == "generation 1: 1/1 ready", "a reload under way is not the last result")
    }

    @Test func phasesAreNamedAsTheControlProtocolDocumentsThem() {
        var machine = SupervisorStateMachine()
        #expect(projection(machine).phase == .starting)
        _ = machine.handle(.start(Machine.configuration(workers: 1)))
        #expect(projection(machine).phase == .starting)
        _ = machine.handle(.workerReady(WorkerID(generation: 1, slot: 0)))
        #expect(projection(machine).phase == .running)
        _ = machine.handle(.reloadRequested(1))
        #expect(projection(machine).phase == .reloading)
        _ = machine.handle(.stopRequested)
        #expect(projection(machine).phase == .stopping)
    }
}
