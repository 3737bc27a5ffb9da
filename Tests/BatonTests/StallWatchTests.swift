import Testing

@testable import Baton

/// When a serving worker counts as stalled: its socket held connections and it accepted
/// none since a look that found it empty or accepting, for the whole timeout.
@Suite struct StallWatchTests {
    static let socket = StallWatch.Socket(worker: WorkerID(generation: 1, slot: 0), listener: "http")

    /// A watch and one socket's looks, with the timeout `timeout`.
    struct Looks {
        var watch = StallWatch()
        let timeout: Duration

        mutating func look(steered: UInt64, queued: UInt32, at now: Double) -> Bool {
            watch.look(at: StallWatchTests.socket, steered: steered, queued: queued, now: now, timeout: timeout)
        }
    }

    @Test func aQueueThatDoesNotMoveForTheTimeoutIsAStall() {
        var looks = Looks(timeout: .seconds(2))
        let outcomes = [
            looks.look(steered: 100, queued: 0, at: 10),
            looks.look(steered: 103, queued: 3, at: 11),
            looks.look(steered: 105, queued: 5, at: 11.9),
            looks.look(steered: 108, queued: 8, at: 12.1),
        ]
        #expect(outcomes == [false, false, false, true], "nothing accepted since 100 at t=10, connections waiting")
    }

    @Test func aBusyWorkerWithAQueueIsNoStall() {
        var looks = Looks(timeout: .seconds(2))
        let stalls = (0..<20).filter { looks.look(steered: UInt64(100 + 10 * $0), queued: 4, at: Double($0)) }
        #expect(stalls.isEmpty, "it accepts ten per look")
    }

    @Test func anIdleWorkerIsNoStall() {
        var looks = Looks(timeout: .seconds(1))
        let stalls = (0..<20).filter { looks.look(steered: 7, queued: 0, at: Double($0)) }
        #expect(stalls.isEmpty)
    }

    @Test func aForgottenWorkerStartsAfresh() {
        var looks = Looks(timeout: .seconds(1))
        _ = looks.look(steered: 10, queued: 2, at: 0)
        looks.watch.keep(only: [])
        let outcomes = [looks.look(steered: 10, queued: 2, at: 5), looks.look(steered: 10, queued: 2, at: 6)]
        #expect(outcomes == [false, true])
    }

    @Test func looksAtLeastFourTimesWithinTheTimeout() {
        #expect(StallWatch.interval(for: .seconds(2)) == .milliseconds(500))
        #expect(StallWatch.interval(for: .milliseconds(100)) == .milliseconds(25))
    }
}
