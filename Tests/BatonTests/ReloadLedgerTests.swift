import Testing

@testable import Baton

/// Who hears what of a reload, and the history `status` shows.
@Suite struct ReloadLedgerTests {
    typealias Ledger = ReloadLedger<String>

    @Test func anAskerWhoDoesNotWaitHearsOnlyThatTheConfigurationWasReadAndTheReloadBegan() {
        var ledger = Ledger()
        let id = ledger.request(from: "ctl", wait: false)
        #expect(ledger.record(.loadingConfiguration, for: [id], at: 100).isEmpty, "not before the file is read")
        let replies = ledger.record(.starting(generation: 2, workers: 1), for: [id], at: 100)
        #expect(replies.map(\.0) == ["ctl"])
        #expect(replies[0].1.final && replies[0].1.ok)
        #expect(ledger.record(.tookOver(generation: 2, replaced: 1), for: [id], at: 101).isEmpty, "answered already")
    }

    @Test func anAskerWhoWaitsHearsEveryStepAndTheOutcome() {
        var ledger = Ledger()
        let id = ledger.request(from: "ctl", wait: true)
        let steps: [ReloadProgress] = [
            .loadingConfiguration, .starting(generation: 2, workers: 1),
            .workerReady(WorkerID(generation: 2, slot: 0), ready: 1, of: 1),
        ]
        for step in steps {
            let replies = ledger.record(step, for: [id], at: 100)
            #expect(replies.count == 1 && !replies[0].1.final && replies[0].1.ok)
        }
        let final = ledger.record(.tookOver(generation: 2, replaced: 1), for: [id], at: 101)
        #expect(final.count == 1)
        #expect(final[0].1 == ControlReply(ok: true, final: true, message: "generation 2 serves; generation 1 drains", generation: 2))
    }

    @Test func aRollbackIsAFailedFinalReplyWithTheReason() {
        var ledger = Ledger()
        let id = ledger.request(from: "ctl", wait: true)
        _ = ledger.record(.loadingConfiguration, for: [id], at: 100)
        let final = ledger.record(.rolledBack(generation: 3, reason: "worker g3/s0 exited with status 1"), for: [id], at: 102)
        #expect(final.count == 1)
        #expect(!final[0].1.ok && final[0].1.final)
        #expect(final[0].1.error?.contains("worker g3/s0 exited with status 1") == true)
        #expect(ledger.history.map(\.result) == [.rolledBack])
        #expect(ledger.history[0].generation == 3)
        #expect(ledger.history[0].started == 100 && ledger.history[0].finished == 102)
    }

    @Test func collapsedRequestsShareOneHistoryEntryAndEveryAskerHearsTheOutcome() {
        var ledger = Ledger()
        let first = ledger.request(from: "a", wait: true)
        let second = ledger.request(from: "b", wait: true)
        let signal = ledger.request(from: nil)
        #expect(Set([first, second, signal]).count == 3, "every request has its own id")
        _ = ledger.record(.loadingConfiguration, for: [first, second, signal], at: 1)
        let final = ledger.record(.failed("the configuration is bad"), for: [first, second, signal], at: 2)
        #expect(final.map(\.0) == ["a", "b"])
        #expect(ledger.history.count == 1)
        #expect(ledger.history[0].result == .failed)
        #expect(ledger.history[0].message == "reload failed: the configuration is bad")
    }

    @Test func theHistoryKeepsTheMostRecentReloads() {
        var ledger = Ledger()
        for index in 0..<(Ledger.historyLimit + 5) {
            let id = ledger.request(from: nil)
            _ = ledger.record(.loadingConfiguration, for: [id], at: Double(index))
            _ = ledger.record(.tookOver(generation: index + 2, replaced: index + 1), for: [id], at: Double(index))
        }
        #expect(ledger.history.count == Ledger.historyLimit)
        #expect(ledger.history.last?.generation == Ledger.historyLimit + 6)
        #expect(ledger.history.allSatisfy { $0.result == .tookOver })
    }

    @Test func aReloadStillRunningShowsAsRunning() {
        var ledger = Ledger()
        let id = ledger.request(from: nil)
        _ = ledger.record(.loadingConfiguration, for: [id], at: 5)
        _ = ledger.record(.starting(generation: 2, workers: 1), for: [id], at: 6)
        #expect(ledger.history.map(\.result) == [.running])
        #expect(ledger.history[0].finished == nil)
    }

    /// The counters behind /metrics: every finished reload, by outcome, with its duration.
    @Test func statisticsCountEveryFinishedReloadAndItsDuration() {
        var ledger = Ledger()
        for (index, outcome) in [
            ReloadProgress.tookOver(generation: 2, replaced: 1), .rolledBack(generation: 3, reason: "x"),
            .failed("bad file"), .tookOver(generation: 4, replaced: 2),
        ].enumerated() {
            let id = ledger.request(from: nil)
            let start = Double(100 * index)
            _ = ledger.record(.loadingConfiguration, for: [id], at: start)
            _ = ledger.record(.starting(generation: 9, workers: 1), for: [id], at: start + 0.1)
            _ = ledger.record(outcome, for: [id], at: start + [0.2, 3, 0.01, 400][index])
        }
        let statistics = ledger.statistics
        #expect((statistics.tookOver, statistics.rolledBack, statistics.failed) == (2, 1, 1))
        #expect(statistics.durations.count == 4)
        #expect(statistics.durations.counts[0] == 1, "0.01s: the first bucket")
        #expect(statistics.durations.counts[2] == 1, "0.2s: at most 0.25s")
        #expect(statistics.durations.counts[6] == 1, "3s: at most 5s")
        #expect(statistics.durations.counts.last == 1, "400s: above every bound")
        #expect(abs(statistics.durations.sum - 403.21) < 1e-6)
    }

    @Test func aReloadRefusedBeforeItStartedIsNotCounted() {
        var ledger = Ledger()
        let id = ledger.request(from: nil)
        _ = ledger.record(.failed("Baton is stopping"), for: [id], at: 5)
        #expect(ledger.statistics.durations.count == 0)
        #expect(ledger.statistics.failed == 0)
    }

    @Test func eachFailureSaysItsKindForTheClientsExitStatus() {
        var ledger = Ledger()
        let cases: [(ReloadProgress, ControlFailure)] = [
            (.rolledBack(generation: 2, reason: "worker g2/s0 exited"), .rolledBack),
            (.configurationRejected("baton.toml: workers.count = \"x\": expected an integer"), .configuration),
            (.failed("Baton is stopping"), .refused),
        ]
        for (progress, failure) in cases {
            let id = ledger.request(from: "ctl", wait: true)
            let replies = ledger.record(progress, for: [id], at: 1)
            #expect(replies.map(\.1.failure) == [failure], "\(progress)")
            #expect(replies.allSatisfy { !$0.1.ok && $0.1.final })
        }
    }

    @Test func aCanaryWaitEndsWhenTheCanaryHoldsItsShareAndADrainedWaitGoesOn() {
        var ledger = Ledger()
        let waiting = ledger.request(from: "wait", wait: .outcome)
        let drained = ledger.request(from: "drained", wait: .drained)
        let serving = ReloadProgress.canaryServing(generation: 2, slots: [0], weight: 10, hold: nil, after: nil)
        let replies = ledger.record(serving, for: [waiting, drained], at: 1)
        #expect(replies.map(\.0) == ["wait", "drained"])
        #expect(replies[0].1.final && replies[0].1.ok, "--wait returns once the canary holds")
        #expect(!replies[1].1.final, "--wait-drained waits through the promotion")
        let promoted = ledger.record(.promoted(generation: 2, strategy: .allAtOnce), for: [waiting, drained], at: 2)
        #expect(promoted.map(\.0) == ["drained"])
    }

    @Test func promoteWaitHearsTheTakeoverAndRollbackWaitTheRollbackAsSuccess() {
        var ledger = Ledger()
        let id = ledger.request(from: nil)
        _ = ledger.record(.loadingConfiguration, for: [id], at: 1)
        ledger.follow([id], by: "promote", wait: .outcome, rollingBack: false)
        let tookOver = ledger.record(.tookOver(generation: 2, replaced: 1), for: [id], at: 2)
        #expect(tookOver.map(\.0) == ["promote"])
        #expect(tookOver[0].1.ok && tookOver[0].1.final)

        let second = ledger.request(from: nil)
        _ = ledger.record(.loadingConfiguration, for: [second], at: 3)
        ledger.follow([second], by: "rollback", wait: .outcome, rollingBack: true)
        let rolledBack = ledger.record(.rolledBack(generation: 3, reason: "rolled back by batonctl rollback"), for: [second], at: 4)
        #expect(rolledBack.map(\.0) == ["rollback"])
        #expect(rolledBack[0].1.ok && rolledBack[0].1.final && rolledBack[0].1.failure == nil)
        // What `batonctl rollback` asks for is a canceled reload: its success, too.
        let third = ledger.request(from: nil)
        _ = ledger.record(.loadingConfiguration, for: [third], at: 5)
        ledger.follow([third], by: "rollback", wait: .outcome, rollingBack: true)
        let canceled = ledger.record(.canceled(generation: 4, reason: "rolled back by batonctl rollback"), for: [third], at: 6)
        #expect(canceled.map(\.0) == ["rollback"])
        #expect(canceled[0].1.ok && canceled[0].1.final && canceled[0].1.failure == nil)
    }

    @Test func aDrainedWaitEndsOnlyOnceTheReplacedGenerationIsGone() {
        var ledger = Ledger()
        let id = ledger.request(from: "ctl", wait: .drained)
        _ = ledger.record(.loadingConfiguration, for: [id], at: 1)
        let tookOver = ledger.record(.tookOver(generation: 2, replaced: 1), for: [id], at: 2)
        #expect(tookOver.count == 1 && !tookOver[0].1.final && tookOver[0].1.ok)
        #expect(tookOver[0].1.message == "generation 2 serves; generation 1 drains; waiting for generation 1 to exit")
        #expect(ledger.generationsGone { _ in true }.isEmpty, "generation 1 still alive")
        let gone = ledger.generationsGone { $0 == 2 }
        #expect(gone.map(\.0) == ["ctl"])
        #expect(gone[0].1 == ControlReply(ok: true, final: true, message: "generation 2 serves; generation 1 drains; generation 1 has exited"))
        #expect(ledger.generationsGone { _ in false }.isEmpty, "answered once")
    }

    /// A canary's hold is the operator's time: a reload's duration runs to its takeover
    /// without it, however long the canary held.
    @Test func aCanarysHoldIsNotPartOfTheReloadsDuration() {
        var ledger = Ledger()
        let id = ledger.request(from: nil)
        _ = ledger.record(.loadingConfiguration, for: [id], at: 1000)
        _ = ledger.record(.startingCanary(generation: 2, workers: 1, weight: 10), for: [id], at: 1000.1)
        _ = ledger.record(.canaryServing(generation: 2, slots: [0], weight: 10, hold: nil, after: nil), for: [id], at: 1001)
        _ = ledger.record(.promoted(generation: 2, strategy: .allAtOnce), for: [id], at: 1043)
        _ = ledger.record(.tookOver(generation: 2, replaced: 1), for: [id], at: 1043.5)
        #expect(ledger.statistics.tookOver == 1)
        #expect(abs(ledger.statistics.durations.sum - 1.5) < 1e-6, "1 s to the canary's share, 0.5 s from promote to takeover")
        #expect(ledger.history.last?.finished == 1043.5, "the history keeps the reload's whole span")
    }
}
