import BatonCore

/// An address a worker binds itself when it runs standalone, without inherited sockets,
/// in the short notation of a worker's command line: `HOST:PORT`, `[IPv6]:PORT` or
/// `unix:/PATH`. It is Baton's ``ListenerAddress`` (`tcp://HOST:PORT`, `unix:///PATH`)
/// with the scheme left out, and read by the same grammar.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// The address in Baton's notation.
    public let address: ListenerAddress

    private init(_ address: ListenerAddress) {
        self.address = address
    }

    /// TCP on an IPv4 or IPv6 address (`host` is a numeric address, not a name).
    public static func tcp(host: String, port: Int) -> ListenAddress {
        ListenAddress(.tcp(host: host, port: UInt16(port)))
    }

    /// A unix stream socket at `path`.
    public static func unix(path: String) -> ListenAddress {
        ListenAddress(.unix(path: path))
    }

    /// TCP on `host` and `port`.
    public init(host: String, port: Int) {
        self = .tcp(host: host, port: port)
    }

    /// `HOST:PORT`, `[IPv6]:PORT` or `unix:/PATH`.
    public init(parsing text: String) throws(BatonWorkerError) {
        var url = "tcp://" + text
        if text.hasPrefix("unix:") {
            let path = text.dropFirst("unix:".count)
            guard path.hasPrefix("/") else {
                throw BatonWorkerError(.badAddress, "'\(text)': a unix address is unix:/ABSOLUTE/PATH")
            }
            url = "unix://" + path
        }
        do {
            address = try ListenerAddress(parsing: url)
        } catch {
            throw BatonWorkerError(.badAddress, "'\(text)': \(error)")
        }
    }

    public var description: String {
        switch address {
        case .tcp(let host, let port), .udp(let host, let port): "\(IPAddress.bracketed(host)):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
