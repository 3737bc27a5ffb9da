/// What went wrong reading the inherited listeners, binding a listener or notifying the
/// supervisor. The description names the variable, value, descriptor or system call.
public struct BatonWorkerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The kind of failure; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// `LISTEN_PID` names another process: the descriptors are not ours.
        public static let wrongProcess = Code("wrong-process")
        /// A variable of the protocol is malformed (not a number, a bad entry).
        public static let malformedVariable = Code("malformed-variable")
        /// `LISTEN_FDNAMES` and `LISTEN_FDS` disagree on the number of sockets.
        public static let countMismatch = Code("count-mismatch")
        /// No inherited listener has the name asked for.
        public static let noSuchListener = Code("no-such-listener")
        /// An inherited descriptor is not open, or not a socket.
        public static let badDescriptor = Code("bad-descriptor")
        /// A listen address could not be parsed.
        public static let badAddress = Code("bad-address")
        /// A system call failed.
        public static let systemCall = Code("system-call")
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
