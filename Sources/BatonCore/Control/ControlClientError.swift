/// A request that got no final answer: which control socket, and why.
public struct ControlClientError: Error, CustomStringConvertible {
    /// The control socket's path.
    public var path: String
    public var reason: String
    /// The system call that failed, when one did.
    public var systemError: SystemError?

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// A failed system call on the control socket at `path`.
    public init(path: String, _ systemError: SystemError) {
        self.init(path: path, reason: "\(systemError)")
        self.systemError = systemError
    }

    public var description: String { "control socket \(path): \(reason)" }
}
