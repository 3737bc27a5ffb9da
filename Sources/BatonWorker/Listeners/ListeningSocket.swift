import BatonCore
import Glibc

/// The system calls on listening sockets: binding one for a standalone worker, checking
/// an inherited one, and setting the backlog.
public enum ListeningSocket {
    /// A socket bound to `address` and listening with `backlog` (default: the system's
    /// largest, `net.core.somaxconn`), close-on-exec. With `reusePort`, `SO_REUSEPORT`
    /// lets several processes share the port. A unix path is taken over only from a
    /// socket left over from a crash.
    public static func bind(_ address: ListenAddress, reusePort: Bool = false, backlog: Int32? = nil) throws(BatonWorkerError) -> Int32 {
        if case .tcp(let host, _) = address.address, IPAddress.family(of: host) == nil {
            throw BatonWorkerError(.badAddress, "'\(address)': '\(host)' is not an IP address")
        }
        do {
            // IPV6_V6ONLY stays as the system sets it: a standalone worker on [::] takes IPv4 too.
            return try ListenerSocket.open(
                address.address, backlog: backlog ?? maximumBacklog, reusePort: reusePort,
                ipv6Only: false, subject: "\(address)")
        } catch {
            let preposition =
                switch error.call {
                case "bind": "to"
                case "listen": "on"
                default: "for"
                }
            throw systemError("\(error.call)() \(preposition) \(error.subject ?? "\(address)")", error.errno)
        }
    }

    /// Checks that `descriptor` is an open socket, listening if it is a stream socket
    /// (a UDP listener is a bound datagram socket), and makes it close-on-exec, so that
    /// programs the worker runs don't hold it.
    public static func adopt(_ descriptor: Int32, name: String) throws(BatonWorkerError) {
        let flags = fcntl(descriptor, F_GETFD)
        guard flags >= 0 else {
            throw BatonWorkerError(.badDescriptor, "inherited listener '\(name)': descriptor \(descriptor) is not open")
        }
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw BatonWorkerError(.badDescriptor, "inherited listener '\(name)': descriptor \(descriptor) is not a socket")
        }
        if type == Int32(SOCK_STREAM.rawValue) {
            var accepting: Int32 = 0
            length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting != 0 else {
                throw BatonWorkerError(
                    .badDescriptor,
                    "inherited listener '\(name)': descriptor \(descriptor) is a stream socket that is not listening"
                )
            }
        }
        _ = fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC)
    }

    /// Sets the backlog of a listening socket (calling `listen()` again only changes it).
    public static func setBacklog(_ descriptor: Int32, _ backlog: Int32) throws(BatonWorkerError) {
        do {
            try ListenerSocket.setBacklog(descriptor, backlog)
        } catch {
            throw systemError("listen(\(descriptor), \(backlog))", error.errno)
        }
    }

    /// True for a TCP socket, false for a unix one.
    public static func isTCP(_ descriptor: Int32) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return found == 0 && (storage.ss_family == sa_family_t(AF_INET) || storage.ss_family == sa_family_t(AF_INET6))
    }

    /// `net.core.somaxconn`, the largest backlog the kernel grants (4096 if unreadable).
    public static let maximumBacklog = ListenerSocket.systemMaximumBacklog()

    static func systemError(_ call: String, _ code: Int32 = errno) -> BatonWorkerError {
        BatonWorkerError(.systemCall, "\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
    }
}

extension ListeningSocket {
    /// Sets `O_NONBLOCK`, as an accept loop needs. On an inherited socket this changes
    /// the open file description every holder shares, as NIO's adoption does too.
    public static func makeNonBlocking(_ descriptor: Int32) throws(BatonWorkerError) {
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw systemError("fcntl(\(descriptor), F_SETFL, O_NONBLOCK)")
        }
    }
}
