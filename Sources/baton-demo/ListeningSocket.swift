import Glibc
import NIOCore

/// The demo's own listening socket, for running it without Baton (`--listen`).
enum ListeningSocket {
    /// A TCP socket bound to `HOST:PORT` (`[::1]:PORT` for IPv6) and listening with the
    /// system's largest backlog; with `reusePort`, several demos can share the port.
    static func bind(_ text: String, reusePort: Bool) throws -> Int32 {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw DemoError("--listen \(text): expected HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: host, port: port)
        } catch {
            throw DemoError("--listen \(text): '\(host)' is not an IP address")
        }
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DemoError("socket(): errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort {
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let bound = address.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) }
        guard bound == 0, listen(fd, maximumBacklog) == 0 else {
            let error = errno
            close(fd)
            throw DemoError("cannot listen on \(text): \(String(cString: strerror(error)))")
        }
        return fd
    }

    /// True for a TCP socket (which gets TCP_NODELAY), false for a unix one.
    static func isTCP(_ fd: Int32) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return found == 0 && (storage.ss_family == sa_family_t(AF_INET) || storage.ss_family == sa_family_t(AF_INET6))
    }

    /// `net.core.somaxconn`, the largest backlog the kernel grants.
    static let maximumBacklog: Int32 = {
        let fd = open("/proc/sys/net/core/somaxconn", O_RDONLY)
        guard fd >= 0 else { return 4096 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, buffer.count)
        return Int32(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self).filter(\.isNumber)) ?? 4096
    }()
}
