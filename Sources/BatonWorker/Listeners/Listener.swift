/// A listening socket of this worker: inherited from the supervisor (or systemd), or
/// bound by the worker itself when it runs standalone.
///
/// The descriptor is listening and close-on-exec. An inherited socket is shared with the
/// supervisor and with the other generation in the same slot: close your descriptor to
/// stop accepting, never `shutdown()` it, which would stop the socket for everyone.
public struct Listener: Sendable, Equatable, CustomStringConvertible {
    public enum Origin: Sendable, Equatable {
        /// Passed by the supervisor, by `source`'s protocol.
        case inherited(InheritedListeners.Source)
        /// Bound by this process at `address`.
        case bound(ListenAddress)
    }

    public let name: String
    public let descriptor: Int32
    public let origin: Origin

    public init(name: String, descriptor: Int32, origin: Origin) {
        self.name = name
        self.descriptor = descriptor
        self.origin = origin
    }

    public var isInherited: Bool {
        if case .inherited = origin { return true }
        return false
    }

    public var description: String {
        switch origin {
        case .inherited(let source): "\(name) (inherited fd \(descriptor), \(source.rawValue))"
        case .bound(let address): "\(name) (\(address))"
        }
    }
}
