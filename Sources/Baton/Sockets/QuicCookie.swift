import CBatonShim

/// The cookie a QUIC server puts into the connection IDs it issues on a socket, so that
/// the steering program routes their packets back to that socket (Docs/steering.md): the
/// low 32 bits of the socket's SO_COOKIE, which the program knows it by (its tag).
enum QuicCookie {
    /// 8 hexadecimal digits, most significant first, as the bytes stand in the ID; nil
    /// when the descriptor is no socket.
    static func of(_ fd: Int32) -> String? {
        var cookie: UInt64 = 0
        guard baton_socket_cookie(fd, &cookie) == 0 else { return nil }
        let hex = String(UInt32(truncatingIfNeeded: cookie), radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }
}
