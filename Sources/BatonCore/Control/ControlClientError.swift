/// A request that got no final answer: which control socket, and why.
public struct ControlClientError: Error, CustomStringConvertible {
    /// The control socket's path.
    public var path: String
    public var reason: String
    public var kind: Kind
    /// The system call that failed, when one did.
    public var systemError: SystemError?

    /// What went wrong, in a word a script can act on.
    public enum Kind: Sendable {
        /// No Baton answers at the path, or the socket cannot be used.
        case unreachable
        /// The socket's permissions do not let this user connect.
        case permissionDenied
        /// Baton did not answer in time.
        case timedOut
        /// The answer ended early or could not be read.
        case brokenAnswer
    }

    public init(path: String, reason: String, _ kind: Kind = .unreachable) {
        self.path = path
        self.reason = reason
        self.kind = kind
    }

    /// A failed system call on the control socket at `path`.
    public init(path: String, _ systemError: SystemError, _ kind: Kind = .unreachable) {
        self.init(path: path, reason: "\(systemError)", kind)
        self.systemError = systemError
    }

    public var description: String { "control socket \(path): \(reason)" }
}
