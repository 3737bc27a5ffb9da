import CSystemd
// Glibc before CSystemd: <systemd/sd-daemon.h> pulls in <sys/socket.h>, and imported
// first it would own the socket constants (SOCK_STREAM, …) in this compiler job, where
// files that import only Glibc could then not find them.
import Glibc
import Logging

/// The sockets systemd passed at start (`LISTEN_FDS`/`LISTEN_FDNAMES`): from socket
/// units, named by their `FileDescriptorName=`, and from the service's fd store, named by
/// the `FDNAME=` Baton stored them under. Each waits here until the listener of the same
/// name adopts it; what no listener wants is reported and closed.
final class InheritedSockets {
    struct Socket {
        var fd: Int32
        var name: String
        var identity: SocketIdentity
    }

    private var waiting: [Socket]

    init(_ sockets: [Socket]) {
        waiting = sockets
    }

    /// Takes what systemd passed to this process, and clears `LISTEN_*` from the
    /// environment. Duplicates of one socket (a socket unit's socket that also sits in the
    /// fd store) are closed, so each socket is adopted once.
    static func fromSystemd(logger: Logger) -> InheritedSockets {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else {
            if count < 0 { logger.warning("LISTEN_FDS ignored: \(SystemError("sd_listen_fds_with_names", errno: -count))") }
            return InheritedSockets([])
        }
        defer {
            for index in 0..<Int(count) { free(names?[index]) }
            free(names)
        }
        var sockets: [Socket] = []
        var seen = Set<SocketIdentity.Inode>()
        for index in 0..<Int(count) {
            let fd = WorkerContract.firstListenerDescriptor + Int32(index)
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            do {
                let identity = try SocketIdentity(fd)
                guard seen.insert(identity.inode).inserted else {
                    logger.debug("fd \(fd) named \(name) is a duplicate of a socket already passed; closed it")
                    close(fd)
                    continue
                }
                sockets.append(Socket(fd: fd, name: name, identity: identity))
            } catch {
                logger.warning("systemd passed fd \(fd) named \(name), which is not a usable socket (\(error)); closed it")
                close(fd)
            }
        }
        return InheritedSockets(sockets)
    }

    /// The first waiting socket named `name`, checked against what the listener asks
    /// for; a socket of the wrong kind or address fails the whole configuration.
    func adopt(for listener: ListenerConfiguration) throws(AdoptionError) -> Socket? {
        guard let index = waiting.firstIndex(where: { $0.name == listener.name }) else { return nil }
        let socket = waiting[index]
        if let mismatch = socket.identity.mismatch(with: listener.address) {
            throw .mismatch(listener: listener, fd: socket.fd, mismatch: mismatch)
        }
        waiting.remove(at: index)
        return socket
    }

    /// Closes and reports every socket no listener adopted; returns their names.
    func closeUnclaimed(logger: Logger) -> Set<String> {
        defer { waiting = [] }
        for socket in waiting {
            logger.warning(
                "systemd passed fd \(socket.fd) named \(socket.name) (\(socket.identity)), but no listener is named \(socket.name); closed it (name the listener after the socket unit's FileDescriptorName=)"
            )
            close(socket.fd)
        }
        return Set(waiting.map(\.name))
    }
}

/// A listener that the sockets systemd passed cannot serve.
enum AdoptionError: Error, CustomStringConvertible {
    /// The socket named after the listener (at `fd`) is another kind or address:
    /// `mismatch` says how, such as "is tcp://127.0.0.1:9090" or "does not listen".
    case mismatch(listener: ListenerConfiguration, fd: Int32, mismatch: String)
    /// A `per-worker` listener whose adopted socket cannot be one of a slot per socket.
    case cannotServeEverySlot(listener: ListenerConfiguration, reason: String)

    var description: String {
        switch self {
        case .mismatch(let listener, let fd, let mismatch):
            "listener \(listener.name) is \(listener.address), but the socket systemd passed as fd \(fd) named \(listener.name) "
                + "\(mismatch): make the socket unit and the configuration agree"
        case .cannotServeEverySlot(let listener, let reason):
            "listener \(listener.name) \(listener.address): the sockets systemd passed cannot serve every slot (\(reason)); "
                + "set reuseport = \"shared\""
        }
    }
}

/// What a descriptor is, as the kernel sees it.
struct SocketIdentity: CustomStringConvertible {
    struct Inode: Hashable {
        var device: UInt64
        var number: UInt64
    }

    var inode: Inode
    var type: Int32
    var family: Int32
    var listening: Bool
    var reusePort: Bool
    /// The bound address in Baton's own notation; nil when unbound.
    var address: ListenerAddress?

    init(_ fd: Int32) throws(SystemError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .last("fstat", subject: "fd \(fd)") }
        guard info.st_mode & S_IFMT == S_IFSOCK else { throw SystemError("fstat", errno: ENOTSOCK, subject: "fd \(fd)") }
        inode = Inode(device: UInt64(info.st_dev), number: UInt64(info.st_ino))
        type = try Self.option(fd, SO_TYPE)
        family = try Self.option(fd, SO_DOMAIN)
        listening = try Self.option(fd, SO_ACCEPTCONN) != 0
        reusePort = (try? Self.option(fd, SO_REUSEPORT)) ?? 0 != 0
        address = try Self.boundAddress(fd, type: type)
    }

    /// Why this socket is not `address`, or nil when it is.
    func mismatch(with wanted: ListenerAddress) -> String? {
        guard let address else { return "is not bound" }
        switch (wanted, address) {
        case (.tcp(let host, let port), .tcp(let actualHost, let actualPort)),
            (.udp(let host, let port), .udp(let actualHost, let actualPort)):
            guard port == actualPort, IPAddress.same(host, actualHost) else { return "is \(address)" }
        case (.unix(let path), .unix(let actualPath)):
            guard path == actualPath else { return "is \(address)" }
        default:
            return "is \(address)"
        }
        if wanted.isStream && !listening { return "does not listen" }
        return nil
    }

    var description: String {
        address.map { "\($0)" } ?? "an unbound socket"
    }

    private static func option(_ fd: Int32, _ name: Int32) throws(SystemError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 else {
            throw .last("getsockopt", subject: "fd \(fd)")
        }
        return value
    }

    private static func boundAddress(_ fd: Int32, type: Int32) throws(SystemError) -> ListenerAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { throw .last("getsockname", subject: "fd \(fd)") }
        let stream = type == Int32(SOCK_STREAM.rawValue)
        switch Int32(storage.ss_family) {
        case AF_INET:
            let address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
            let host = withUnsafeBytes(of: address.sin_addr) { IPAddress.string($0, family: AF_INET) }
            let port = UInt16(bigEndian: address.sin_port)
            return stream ? .tcp(host: host, port: port) : .udp(host: host, port: port)
        case AF_INET6:
            let address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in6.self) }
            let host = withUnsafeBytes(of: address.sin6_addr) { IPAddress.string($0, family: AF_INET6) }
            let port = UInt16(bigEndian: address.sin6_port)
            return stream ? .tcp(host: host, port: port) : .udp(host: host, port: port)
        case AF_UNIX:
            let pathLength = Int(length) - MemoryLayout<sa_family_t>.size
            guard pathLength > 0 else { return nil }
            let path = withUnsafeBytes(of: storage) { bytes in
                let start = MemoryLayout<sa_family_t>.size
                let raw = bytes[start..<(start + pathLength)]
                // An abstract name starts with NUL; Baton writes it with '@'.
                if raw.first == 0 { return "@" + String(decoding: raw.dropFirst(), as: UTF8.self) }
                return String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            return .unix(path: path)
        default:
            return nil
        }
    }
}
