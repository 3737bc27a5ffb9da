import Testing

@testable import Baton

/// The bookkeeping of the canary health check's runs: found by pid once, marked when
/// killed for their timeout, and taken for killing when their worker is gone.
@Suite struct CanaryCheckRunsTests {
    let worker = WorkerID(generation: 2, slot: 1)

    @Test func aRunIsReapedOnceWithItsWorkerAndTimeout() {
        var runs = CanaryCheckRuns()
        runs.add(102, against: worker, timeout: .seconds(2))
        #expect(runs[102] == .init(worker: worker, timeout: .seconds(2)))
        #expect(runs.reaped(102) == .init(worker: worker, timeout: .seconds(2)))
        #expect(runs.reaped(102) == nil, "a pid is reaped once")
        #expect(runs.reaped(999) == nil, "an orphan is no run")
    }

    @Test func aRunKilledForItsTimeoutIsReapedAsKilled() {
        var runs = CanaryCheckRuns()
        runs.add(102, against: worker, timeout: .seconds(2))
        runs.killed(102)
        #expect(runs.reaped(102)?.killed == true)
        runs.killed(102)
        #expect(runs[102] == nil, "a run already reaped is not marked again")
    }

    @Test func theRunsAgainstAWorkerThatExitedAreTakenForKillingAndThenReapedAsOrphans() {
        var runs = CanaryCheckRuns()
        let other = WorkerID(generation: 2, slot: 0)
        runs.add(102, against: worker, timeout: .seconds(2))
        runs.add(103, against: worker, timeout: .seconds(2))
        runs.add(201, against: other, timeout: .seconds(2))
        #expect(runs.take(against: worker) == [102, 103])
        #expect(runs.take(against: worker).isEmpty, "taken once")
        #expect(runs.reaped(102) == nil, "a taken run is reaped as an orphan")
        #expect(runs.reaped(201)?.worker == other, "another worker's run stays")
    }
}
