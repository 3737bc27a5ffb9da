/// A canary reload (`batonctl reload --canary K`): K workers of the new generation take
/// about `weight` percent of new connections beside every old worker, until promoted
/// (the reload completes by the configured strategy) or rolled back (Docs/rollouts.md).
struct Canary: Sendable, Equatable {
    /// What happens at the end of the hold.
    enum After: String, Sendable, Equatable {
        case promote, rollback
    }

    /// How many slots (the first ones) the canary's workers fill.
    var workers: Int
    /// The canary's share of new connections, in percent.
    var weight: Int
    /// How long the canary holds before `after` happens; nil: until asked.
    var hold: Duration?
    var after: After?

    static let defaultWeight = 10
    /// The weights a canary may have, in percent.
    static let weights = 1...99

    init(workers: Int, weight: Int = Canary.defaultWeight, hold: Duration? = nil, after: After? = nil) {
        self.workers = workers
        self.weight = weight
        self.hold = hold
        self.after = after
    }
}
