/// An address a worker binds itself when it runs standalone, without inherited sockets.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// TCP on an IPv4 or IPv6 address (`host` is a numeric address, not a name).
    case tcp(host: String, port: Int)
    /// A unix stream socket at `path`.
    case unix(path: String)

    /// TCP on `host` and `port`.
    public init(host: String, port: Int) {
        self = .tcp(host: host, port: port)
    }

    /// `HOST:PORT`, `[IPv6]:PORT` or `unix:/PATH`.
    public init(parsing text: String) throws(BatonWorkerError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard path.hasPrefix("/") else {
                throw BatonWorkerError(.badAddress, "'\(text)': a unix address is unix:/ABSOLUTE/PATH")
            }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else {
            throw BatonWorkerError(.badAddress, "'\(text)': expected HOST:PORT, [IPv6]:PORT or unix:/PATH")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else {
            throw BatonWorkerError(.badAddress, "'\(text)': the host is missing (use 0.0.0.0 or [::] for every address)")
        }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
