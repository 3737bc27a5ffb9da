import CBatonShim
import Glibc

/// Opens the sockets Baton holds for the whole life of a listener.
enum ListenerSocket {
    /// A bound (and for streams, listening) socket for `listener`. Close-on-exec, so
    /// that only the descriptors placed on purpose reach a worker.
    static func open(_ listener: ListenerConfiguration, backlog: Int32) throws(SystemError) -> Int32 {
        let subject = "listener \(listener.name) \(listener.address)"
        switch listener.address {
        case .tcp(let host, let port), .udp(let host, let port):
            let family = IPAddress.family(of: host) ?? AF_INET
            let type = listener.address.isStream ? SOCK_STREAM : SOCK_DGRAM
            let fd = socket(family, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .last("socket", subject: subject) }
            do throws(SystemError) {
                try setOption(fd, SOL_SOCKET, SO_REUSEADDR, subject: subject)
                // Shared sockets too: a reload that switches the listener to per-worker
                // then opens its new sockets beside the old one instead of closing it.
                try setOption(fd, SOL_SOCKET, SO_REUSEPORT, subject: subject)
                if family == AF_INET6 {
                    // [::] means IPv6 only; a second listener takes 0.0.0.0 if both are wanted.
                    try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, subject: subject)
                }
                try bind(fd, host: host, port: port, family: family, subject: subject)
                if listener.address.isStream {
                    guard Glibc.listen(fd, backlog) == 0 else { throw SystemError.last("listen", subject: subject) }
                }
            } catch {
                Glibc.close(fd)
                throw error
            }
            return fd
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .last("socket", subject: subject) }
            do throws(SystemError) {
                try removeStaleUnixSocket(path, subject: subject)
                var address = try UnixAddress(path, subject: subject)
                let result = address.withSockaddr { Glibc.bind(fd, $0, $1) }
                guard result == 0 else { throw SystemError.last("bind", subject: subject) }
                if let mode = listener.socketMode, chmod(path, mode) != 0 {
                    throw SystemError.last("chmod", subject: subject)
                }
                guard Glibc.listen(fd, backlog) == 0 else { throw SystemError.last("listen", subject: subject) }
            } catch {
                Glibc.close(fd)
                throw error
            }
            return fd
        }
    }

    /// `listen()` again on a listening socket only changes its backlog.
    static func setBacklog(_ fd: Int32, _ backlog: Int32) {
        _ = Glibc.listen(fd, backlog)
    }

    /// The kernel's cap on backlogs, which is also the best default.
    static func systemMaximumBacklog() -> Int32 {
        let text = (try? FileContents.read("/proc/sys/net/core/somaxconn")) ?? ""
        return Int32(text.filter(\.isNumber)) ?? 4096
    }

    /// The accept queue's current length and limit, for a TCP listening socket.
    static func acceptQueue(_ fd: Int32) -> (depth: UInt32, capacity: UInt32)? {
        var depth: UInt32 = 0
        var capacity: UInt32 = 0
        guard baton_accept_queue(fd, &depth, &capacity) == 0 else { return nil }
        return (depth, capacity)
    }

    private static func setOption(_ fd: Int32, _ level: Int32, _ option: Int32, subject: String) throws(SystemError) {
        var on: Int32 = 1
        guard setsockopt(fd, level, option, &on, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .last("setsockopt", subject: subject)
        }
    }

    private static func bind(_ fd: Int32, host: String, port: UInt16, family: Int32, subject: String) throws(SystemError) {
        let result: Int32
        if family == AF_INET6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &address.sin6_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard result == 0 else { throw .last("bind", subject: subject) }
    }

    /// A socket file nobody listens on is left over from a crash: remove it. One that
    /// answers belongs to a running server, which we must not steal from.
    private static func removeStaleUnixSocket(_ path: String, subject: String) throws(SystemError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw SystemError("bind", errno: EEXIST, subject: "\(subject) (the path exists and is not a socket)")
        }
        if UnixAddress.isListening(path) {
            throw SystemError("bind", errno: EADDRINUSE, subject: "\(subject) (another process listens on it)")
        }
        unlink(path)
    }
}
