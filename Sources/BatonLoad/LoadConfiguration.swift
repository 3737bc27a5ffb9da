import Glibc

/// Where the load goes.
public enum LoadTarget: Sendable, Equatable, CustomStringConvertible {
    /// `host` is an IPv4 or IPv6 literal.
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .unix(let path): "unix://\(path)"
        }
    }
}

extension LoadTarget {
    /// A TCP port on 127.0.0.1 that nothing listens on right now, chosen by the kernel.
    public static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let found = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard found else { throw LoadError("cannot find a free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public struct LoadError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How clients use connections.
public enum ConnectionMode: String, Sendable, Codable, CaseIterable {
    /// A new connection for every request (`Connection: close`).
    case newConnection = "new-connection"
    /// Requests back to back on each connection; a new one only when the server closes.
    case keepAlive = "keep-alive"
}

/// What can go wrong with one request.
public enum FailureKind: String, Sendable, Codable, CaseIterable, CodingKeyRepresentable {
    /// `connect()` was refused: nothing listened.
    case refused
    /// The connection was reset before the response was complete.
    case reset
    /// No complete answer within the request timeout.
    case timedOut = "timed-out"
    /// The connection ended before the response was complete.
    case shortResponse = "short-response"
    /// A response that is not `200` or lacks the expected header.
    case wrongResponse = "wrong-response"
    /// A request written on a keep-alive connection that had already answered, which the
    /// server closed without answering: the keep-alive race of a careless drain.
    case lostOnReusedConnection = "lost-on-reused-connection"
    case other
}

public struct LoadConfiguration: Sendable {
    public var target: LoadTarget
    public var mode: ConnectionMode = .newConnection
    /// Concurrent clients, each a thread.
    public var clients = 16
    public var path = "/"
    /// For connecting, and for the whole answer to each request.
    public var requestTimeout: Duration = .seconds(5)
    /// A response without this header is a wrong response.
    public var expectedHeader: String? = "X-Pid"
    /// A generator that was never stopped stops by itself after this long.
    public var maximumDuration: Duration = .seconds(600)
    /// Open loop: requests per second over all clients, each sent at its scheduled time
    /// whether or not the previous one was answered late, with latency counted from that
    /// time, so a stalled server shows as latency instead of slowing the load down.
    /// Nil: closed loop, each client sends its next request when the last is answered.
    public var rate: Double?
    /// Runs first on every client thread, before it opens a connection: a test uses it
    /// to enter the network namespace of the server it loads.
    public var prepareThread: (@Sendable () -> Void)?

    public init(target: LoadTarget) {
        self.target = target
    }
}
