import Glibc

/// The system calls that make a listening socket, shared by the supervisor (which holds
/// its listeners' sockets) and by a worker that binds its own when it runs standalone.
package enum ListenerSocket {
    /// A bound (and for streams, listening) socket at `address`, close-on-exec, so that
    /// only the descriptors placed on purpose reach a child.
    ///
    /// - Parameters:
    ///   - reusePort: sets `SO_REUSEPORT`, so that other sockets can join the port.
    ///   - ipv6Only: for an IPv6 address, sets `IPV6_V6ONLY`; otherwise `[::]` takes
    ///     IPv4 too, as the system's default (`net.ipv6.bindv6only`) says.
    ///   - unixMode: for a unix socket, the file's mode, set before it listens.
    ///   - subject: what errors name, such as "listener http tcp://0.0.0.0:8080".
    /// - Throws: ``SystemError`` with the call that failed; for a unix path, also when
    ///   the path is taken by a file or by a socket a process listens on.
    package static func open(
        _ address: ListenerAddress, backlog: Int32, reusePort: Bool, ipv6Only: Bool, unixMode: mode_t? = nil,
        subject: String
    ) throws(SystemError) -> Int32 {
        switch address {
        case .tcp(let host, let port), .udp(let host, let port):
            guard let family = IPAddress.family(of: host) else {
                throw SystemError("bind", errno: EINVAL, subject: "\(subject) ('\(host)' is not an IP address)")
            }
            let type = address.isStream ? SOCK_STREAM : SOCK_DGRAM
            let fd = socket(family, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .last("socket", subject: subject) }
            do throws(SystemError) {
                try setOption(fd, SOL_SOCKET, SO_REUSEADDR, subject: subject)
                if reusePort {
                    try setOption(fd, SOL_SOCKET, SO_REUSEPORT, subject: subject)
                }
                if family == AF_INET6 && ipv6Only {
                    try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, subject: subject)
                }
                try bind(fd, host: host, port: port, family: family, subject: subject)
                if address.isStream {
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
                var unixAddress = try UnixAddress(path, subject: subject)
                let result = unixAddress.withSockaddr { Glibc.bind(fd, $0, $1) }
                guard result == 0 else { throw SystemError.last("bind", subject: subject) }
                if let unixMode, chmod(path, unixMode) != 0 {
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
    package static func setBacklog(_ fd: Int32, _ backlog: Int32) throws(SystemError) {
        guard Glibc.listen(fd, backlog) == 0 else { throw .last("listen", subject: "fd \(fd)") }
    }

    /// `net.core.somaxconn`: the kernel's cap on backlogs, which is also the best
    /// default (4096, the kernel's own default, when it cannot be read).
    package static func systemMaximumBacklog() -> Int32 {
        let text = (try? FileContents.read("/proc/sys/net/core/somaxconn")) ?? ""
        return Int32(text.filter(\.isNumber)) ?? 4096
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
    /// answers belongs to a running server, which we must not steal from, and a path
    /// that is not a socket is not ours at all.
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
