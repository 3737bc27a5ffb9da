/// How the listeners' sockets are spread over the slots.
public enum ReusePortMode: String, Sendable, Equatable, CaseIterable, Codable {
    /// One `SO_REUSEPORT` socket per slot: the kernel spreads connections over slots.
    case perWorker = "per-worker"
    /// One socket for every slot.
    case shared
}
