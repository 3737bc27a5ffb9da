import Glibc

/// A failed system call: which call, on what, and the errno it returned.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    /// What the call was working on, such as "listener http tcp://0.0.0.0:8080".
    public var subject: String?

    /// - Parameters:
    ///   - call: the system call, such as `bind`.
    ///   - errno: what it set `errno` to.
    ///   - subject: what it was working on.
    public init(_ call: String, errno: Int32, subject: String? = nil) {
        self.call = call
        self.errno = errno
        self.subject = subject
    }

    /// The error of the call that just failed.
    package static func last(_ call: String, subject: String? = nil) -> SystemError {
        SystemError(call, errno: Glibc.errno, subject: subject)
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        return subject.map { "\($0): \(call): \(reason)" } ?? "\(call): \(reason)"
    }
}
