/// Watches the own sockets of generations out of rotation until they are empty, by
/// polling them, and only while one is leaving: an idle Baton does not wake.
struct EmptyQueueWatch {
    /// How often a leaving generation's sockets are looked at.
    static let interval: Duration = .milliseconds(10)
    /// Empty this many looks in a row counts as empty: the workers have also had time
    /// to answer what they accepted last before they get the drain signal.
    static let settledAfter = 5

    private var emptyLooks: [Int: Int] = [:]

    mutating func start(_ generation: Int) {
        emptyLooks[generation] = 0
    }

    func isWatching(_ generation: Int) -> Bool {
        emptyLooks[generation] != nil
    }

    /// Records one look; returns true, ending the watch, once the sockets have settled empty.
    mutating func looked(at generation: Int, empty: Bool) -> Bool {
        guard let looks = emptyLooks[generation] else { return false }
        let now = empty ? looks + 1 : 0
        guard now < Self.settledAfter else {
            emptyLooks[generation] = nil
            return true
        }
        emptyLooks[generation] = now
        return false
    }

    mutating func stop(_ generation: Int) {
        emptyLooks[generation] = nil
    }
}
