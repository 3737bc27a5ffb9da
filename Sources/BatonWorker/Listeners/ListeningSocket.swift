import Glibc

/// The system calls on listening sockets: binding one for a standalone worker, checking
/// an inherited one, and setting the backlog.
public enum ListeningSocket {
    /// A socket bound to `address` and listening with `backlog` (default: the system's
    /// largest, `net.core.somaxconn`), close-on-exec. With `reusePort`, `SO_REUSEPORT`
    /// lets several processes share the port.
    public static func bind(_ address: ListenAddress, reusePort: Bool = false, backlog: Int32? = nil) throws(BatonWorkerError) -> Int32 {
        switch address {
        case .tcp(let host, let port):
            let family: Int32
            var storage = sockaddr_storage()
            var length: socklen_t
            if host.contains(":") {
                var ip = sockaddr_in6()
                ip.sin6_family = sa_family_t(AF_INET6)
                ip.sin6_port = in_port_t(UInt16(port).bigEndian)
                guard inet_pton(AF_INET6, host, &ip.sin6_addr) == 1 else {
                    throw BatonWorkerError(.badAddress, "'\(address)': '\(host)' is not an IPv6 address")
                }
                family = AF_INET6
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
                withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: ip, as: sockaddr_in6.self) }
            } else {
                var ip = sockaddr_in()
                ip.sin_family = sa_family_t(AF_INET)
                ip.sin_port = in_port_t(UInt16(port).bigEndian)
                guard inet_pton(AF_INET, host, &ip.sin_addr) == 1 else {
                    throw BatonWorkerError(.badAddress, "'\(address)': '\(host)' is not an IPv4 address")
                }
                family = AF_INET
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
                withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: ip, as: sockaddr_in.self) }
            }
            let fd = try makeSocket(family, address)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if reusePort {
                setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            return try bindAndListen(fd, &storage, length, address, backlog)
        case .unix(let path):
            var unixAddress = sockaddr_un()
            unixAddress.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: unixAddress.sun_path) else {
                throw BatonWorkerError(.badAddress, "'\(address)': the path is too long for a unix socket")
            }
            withUnsafeMutableBytes(of: &unixAddress.sun_path) { $0.copyBytes(from: bytes) }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: unixAddress, as: sockaddr_un.self) }
            try removeStaleSocket(path, address)
            let fd = try makeSocket(AF_UNIX, address)
            return try bindAndListen(fd, &storage, socklen_t(MemoryLayout<sockaddr_un>.size), address, backlog)
        }
    }

    /// A socket file nobody listens on is left over from a crash: remove it. Anything
    /// else at the path (a file, a server that answers) is not ours to remove.
    private static func removeStaleSocket(_ path: String, _ address: ListenAddress) throws(BatonWorkerError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw BatonWorkerError(.systemCall, "bind() to \(address) failed: the path exists and is not a socket (errno \(EEXIST))")
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var unixAddress = sockaddr_un()
        unixAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &unixAddress.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let answered = withUnsafePointer(to: &unixAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
        close(probe)
        if answered {
            throw BatonWorkerError(.systemCall, "bind() to \(address) failed: another process listens on it (errno \(EADDRINUSE))")
        }
        unlink(path)
    }

    private static func makeSocket(_ family: Int32, _ address: ListenAddress) throws(BatonWorkerError) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw systemError("socket() for \(address)") }
        return fd
    }

    private static func bindAndListen(
        _ fd: Int32, _ storage: inout sockaddr_storage, _ length: socklen_t, _ address: ListenAddress, _ backlog: Int32?
    ) throws(BatonWorkerError) -> Int32 {
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let error = systemError("bind() to \(address)")
            close(fd)
            throw error
        }
        guard listen(fd, backlog ?? maximumBacklog) == 0 else {
            let error = systemError("listen() on \(address)")
            close(fd)
            throw error
        }
        return fd
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
        guard listen(descriptor, backlog) == 0 else { throw systemError("listen(\(descriptor), \(backlog))") }
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
    public static let maximumBacklog: Int32 = {
        let fd = open("/proc/sys/net/core/somaxconn", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 4096 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, buffer.count)
        return Int32(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self).filter(\.isNumber)) ?? 4096
    }()

    static func systemError(_ call: String) -> BatonWorkerError {
        let code = errno
        return BatonWorkerError(.systemCall, "\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
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
