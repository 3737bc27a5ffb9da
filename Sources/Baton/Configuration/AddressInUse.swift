/// What Baton does at start when another process already has a socket on a listener's
/// address (`listener.address_in_use`). With `SO_REUSEPORT` a second server of the same
/// user can bind beside the first, and the kernel would split the connections between
/// the two.
public enum AddressInUse: String, Sendable, Equatable, CaseIterable, Codable {
    /// Refuse to start, naming the address and the processes that hold it.
    case refuse
    /// Serve beside them, as `SO_REUSEPORT` allows.
    case share
}
