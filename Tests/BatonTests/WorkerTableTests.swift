import Testing

@testable import Baton

@Suite struct WorkerTableTests {
    let worker = WorkerID(generation: 2, slot: 1)

    @Test func aReapedWorkerLeavesTheTableWithItsEntry() {
        var table = WorkerTable()
        table.add(worker, .init(pid: 4242, started: 7, notifySocket: nil))
        #expect(table.pid(of: worker) == 4242)
        guard case .worker(let reaped, let entry) = table.reaped(4242) else {
            Issue.record("pid 4242 was not found as a worker")
            return
        }
        #expect(reaped == worker && entry.started == 7)
        #expect(table[worker] == nil && table.pid(of: worker) == nil)
        guard case .unknown = table.reaped(4242) else {
            Issue.record("a pid is reaped once")
            return
        }
    }

    @Test func aProbeIsFoundAsTheProbeOfItsWorker() {
        var table = WorkerTable()
        table.add(worker, .init(pid: 100, started: 0, notifySocket: nil))
        table.addProbe(101, for: worker)
        guard case .probe(let probed) = table.reaped(101) else {
            Issue.record("pid 101 was not found as a probe")
            return
        }
        #expect(probed == worker)
        #expect(table.pid(of: worker) == 100, "the worker stays when its probe exits")
    }

    @Test func theProbesOfAWorkerThatExitedAreTakenForKillingAndThenReapedAsOrphans() {
        var table = WorkerTable()
        let other = WorkerID(generation: 2, slot: 0)
        table.add(worker, .init(pid: 100, started: 0, notifySocket: nil))
        table.addProbe(101, for: worker)
        table.addProbe(102, for: worker)
        table.addProbe(201, for: other)
        #expect(Set(table.takeProbes(of: worker)) == [101, 102])
        #expect(table.takeProbes(of: worker).isEmpty, "taken once")
        guard case .unknown = table.reaped(102) else {
            Issue.record("a taken probe is reaped as an orphan")
            return
        }
        guard case .probe(let probed) = table.reaped(201), probed == other else {
            Issue.record("another worker's probe stays")
            return
        }
    }

    @Test func anOrphanIsUnknown() {
        var table = WorkerTable()
        guard case .unknown = table.reaped(999) else {
            Issue.record("an orphan is neither worker nor probe")
            return
        }
    }
}
