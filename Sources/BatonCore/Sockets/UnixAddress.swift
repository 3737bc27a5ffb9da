import Glibc

/// A `sockaddr_un` for a path, or for an abstract name written `@name` (as in
/// `NOTIFY_SOCKET`).
package struct UnixAddress {
    private var address = sockaddr_un()

    package init(_ path: String, subject: String) throws(SystemError) {
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SystemError("bind", errno: ENAMETOOLONG, subject: subject)
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
            // '@' names an abstract socket, as in NOTIFY_SOCKET.
            if bytes.first == UInt8(ascii: "@") { buffer[0] = 0 }
        }
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == UInt8(ascii: "@") ? 0 : 1))
    }

    private var length: socklen_t = 0

    package mutating func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        let length = self.length
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// Whether a process accepts connections on this path.
    package static func isListening(_ path: String) -> Bool {
        guard var address = try? UnixAddress(path, subject: path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return address.withSockaddr { connect(fd, $0, $1) } == 0
    }
}
