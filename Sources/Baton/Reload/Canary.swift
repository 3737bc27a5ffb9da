/// A canary reload (`batonctl reload --canary K`): K workers of the new generation take
/// about `weight` percent of new connections beside every old worker, until promoted
/// (the reload completes by the configured strategy) or rolled back (Docs/rollouts.md).
public struct Canary: Sendable, Equatable {
    /// What happens at the end of the hold.
    public enum After: String, Sendable, Equatable {
        case promote, rollback
    }

    /// How many slots (the first ones) the canary's workers fill.
    public var workers: Int
    /// The canary's share of new connections, in percent.
    public var weight: Int
    /// How long the canary holds before `after` happens; nil: until asked.
    public var hold: Duration?
    public var after: After?

    public static let defaultWeight = 10
    /// The weights a canary may have, in percent.
    public static let weights = 1...99

    public init(workers: Int, weight: Int = Canary.defaultWeight, hold: Duration? = nil, after: After? = nil) {
        self.workers = workers
        self.weight = weight
        self.hold = hold
        self.after = after
    }
}
