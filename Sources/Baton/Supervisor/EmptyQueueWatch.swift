/// Watches generations (or, in a rolling reload, slots) out of rotation until their own
/// sockets are empty and their workers have answered what they took, by polling, and only while one is
/// leaving: an idle Baton does not wake.
struct EmptyQueueWatch<Watched: Hashable> {
    /// How often a leaving generation's sockets are looked at.
    static var interval: Duration { .milliseconds(10) }
    /// Empty this many looks in a row, with the generation's workers holding no
    /// unanswered connection at the last one, counts as settled: a handshake under way
    /// when the sockets left the rotation has reached their queue and been accepted, and
    /// the workers have answered what they accepted before they get the drain signal.
    static var settledAfter: Int { 10 }

    private var emptyLooks: [Watched: Int] = [:]

    mutating func start(_ generation: Watched) {
        emptyLooks[generation] = 0
    }

    func isWatching(_ generation: Watched) -> Bool {
        emptyLooks[generation] != nil
    }

    /// Whether an empty look now would end the watch: the moment to check, once, the
    /// costlier condition that the workers have answered what they took.
    func isLastLook(at generation: Watched) -> Bool {
        emptyLooks[generation] == Self.settledAfter - 1
    }

    /// Records one look; returns true, ending the watch, once the sockets have settled empty.
    mutating func looked(at generation: Watched, empty: Bool) -> Bool {
        guard let looks = emptyLooks[generation] else { return false }
        let now = empty ? looks + 1 : 0
        guard now < Self.settledAfter else {
            emptyLooks[generation] = nil
            return true
        }
        emptyLooks[generation] = now
        return false
    }

    mutating func stop(_ generation: Watched) {
        emptyLooks[generation] = nil
    }
}
