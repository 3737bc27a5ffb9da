import Testing

@testable import Baton

/// When a leaving generation counts as settled: its sockets empty at ten looks in a row.
@Suite struct EmptyQueueWatchTests {
    @Test func tenEmptyLooksInARowSettle() {
        var watch = EmptyQueueWatch<Int>()
        watch.start(3)
        var lastLooks: [Int] = []
        var settledAt: Int?
        for look in 1...20 where settledAt == nil {
            if watch.isLastLook(at: 3) { lastLooks.append(look) }
            if watch.looked(at: 3, empty: look != 4) { settledAt = look }
        }
        #expect(settledAt == 14, "the non-empty fourth look starts the count again")
        #expect(lastLooks == [14], "the workers' threads are read once, at the look that settles")
        #expect(!watch.isWatching(3))
    }

    @Test func aGenerationNotWatchedNeverSettles() {
        var watch = EmptyQueueWatch<Int>()
        let settled = watch.looked(at: 1, empty: true)
        #expect(!settled)
        #expect(!watch.isLastLook(at: 1))
    }
}
