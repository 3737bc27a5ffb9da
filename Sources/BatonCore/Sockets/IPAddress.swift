import Glibc

/// IPv4 and IPv6 literals, as listener addresses and kernels write them.
package enum IPAddress {
    /// AF_INET or AF_INET6 for a literal, nil for anything else.
    package static func family(of host: String) -> Int32? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return AF_INET }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return AF_INET6 }
        return nil
    }

    /// Whether two literals name the same address (`::0` and `::` do).
    package static func same(_ first: String, _ second: String) -> Bool {
        guard let family = family(of: first), family == self.family(of: second) else { return false }
        var one = in6_addr()
        var other = in6_addr()
        inet_pton(family, first, &one)
        inet_pton(family, second, &other)
        return withUnsafeBytes(of: one) { a in withUnsafeBytes(of: other) { b in a.elementsEqual(b) } }
    }

    /// The literal of a raw `in_addr` or `in6_addr`.
    package static func string(_ address: UnsafeRawBufferPointer, family: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(family, address.baseAddress, &buffer, socklen_t(buffer.count))
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    package static func bracketed(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }
}
