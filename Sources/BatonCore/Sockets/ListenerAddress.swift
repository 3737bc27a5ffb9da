/// Where a listener listens: `tcp://127.0.0.1:8080`, `tcp://[::1]:8080`,
/// `udp://0.0.0.0:5353` or `unix:///run/app.sock`.
public enum ListenerAddress: Hashable, Sendable, Codable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case udp(host: String, port: UInt16)
    case unix(path: String)

    /// Parses the URL form; the host must be an IPv4 or bracketed IPv6 literal.
    public init(parsing text: String) throws(FormatError) {
        guard let separator = text.firstRange(of: "://") else {
            throw FormatError("expected scheme://address, such as tcp://127.0.0.1:8080 or unix:///run/app.sock")
        }
        let scheme = text[..<separator.lowerBound]
        let rest = String(text[separator.upperBound...])
        switch scheme {
        case "tcp", "udp":
            let (host, port) = try Self.hostAndPort(rest)
            self = scheme == "tcp" ? .tcp(host: host, port: port) : .udp(host: host, port: port)
        case "unix":
            guard !rest.isEmpty else {
                throw FormatError("a unix address needs a path, such as unix:///run/app.sock")
            }
            guard rest.utf8.count < 108 else {
                throw FormatError("a unix socket path must be shorter than 108 bytes")
            }
            self = .unix(path: rest)
        default:
            throw FormatError("unknown scheme '\(scheme)': use tcp, udp or unix")
        }
    }

    private static func hostAndPort(_ text: String) throws(FormatError) -> (String, UInt16) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                text[text.index(after: close)...].hasPrefix(":")
            else {
                throw FormatError("expected [IPv6]:port")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw FormatError("expected host:port")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else {
            throw FormatError("'\(portText)' is not a port number (0-65535)")
        }
        let hostString = String(host)
        guard IPAddress.family(of: hostString) != nil else {
            throw FormatError("'\(hostString)' is not an IP address: use an IPv4 literal or [IPv6] in brackets")
        }
        return (hostString, port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): "tcp://\(IPAddress.bracketed(host)):\(port)"
        case .udp(let host, let port): "udp://\(IPAddress.bracketed(host)):\(port)"
        case .unix(let path): "unix://\(path)"
        }
    }

    /// TCP and UDP sockets can join an `SO_REUSEPORT` group; unix sockets cannot.
    public var supportsReusePort: Bool {
        if case .unix = self { return false }
        return true
    }

    /// TCP and unix sockets are streams (they listen and accept); UDP is datagrams.
    public var isStream: Bool {
        if case .udp = self { return false }
        return true
    }
}
