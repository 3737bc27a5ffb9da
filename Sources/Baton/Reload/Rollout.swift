/// A rolling reload under way: generation `to` takes over generation `from`'s slots,
/// `batch` at a time, each batch starting only once the old workers of the one before
/// have exited, so that at most `slots + batch` workers are alive. Once a batch fails
/// it goes back the same way: old-configuration workers start again in `from` for the
/// replaced slots, last replaced first, `batch` at a time, and take those slots back.
struct Rollout: Sendable, Equatable {
    let from: Int
    let to: Int
    let batch: Int
    /// How many slots both generations have.
    let slots: Int
    /// Slots whose rotation entry is generation `to`'s socket, in the order they were
    /// replaced.
    internal(set) var replaced: [Int] = []
    /// The batch under way: slots whose worker is starting, in `to` going forward, in
    /// `from` going back.
    internal(set) var batchSlots: [Int] = []
    /// Why the rollout goes back; nil while it goes forward.
    internal(set) var failure: String?
    /// The canary that holds (or starts), until it is promoted or rolled back.
    internal(set) var canary: Canary?
    /// The canary's slots, once its workers are ready: their sockets of `to` take a share
    /// of new connections beside every socket of `from`.
    internal(set) var canarySlots: [Int] = []
    /// The canary's health check runs that failed in a row.
    internal(set) var canaryCheckFailures = 0

    /// The generation whose socket of `slot` is in rotation (when its worker is ready).
    func owner(of slot: Int) -> Int {
        replaced.contains(slot) ? to : from
    }

    /// The generation whose workers the batch under way starts.
    var starting: Int { failure == nil ? to : from }
    /// The generation whose workers the batch under way replaces: it yields those slots.
    var yielding: Int { failure == nil ? from : to }
}
