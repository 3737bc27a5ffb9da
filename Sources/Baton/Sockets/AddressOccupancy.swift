import Glibc

/// Which other processes have a socket on an address, from `/proc/net/{tcp,tcp6,udp,udp6}`
/// (listening TCP sockets, bound UDP ones) and the socket inodes in each process's
/// descriptors. Sockets this process holds, its own or passed by systemd, do not count.
enum AddressOccupancy {
    /// Throws when a listener with `address_in_use = "refuse"` has an address another
    /// process serves.
    static func check(_ configuration: Configuration) throws(ConfigurationError) {
        for listener in configuration.listeners where (listener.addressInUse ?? .refuse) == .refuse {
            let holders = others(on: listener.address)
            guard !holders.isEmpty else { continue }
            let pids = holders == [-1] ? " (not visible to this user)" : " (pid \(holders.map(String.init).joined(separator: ", ")))"
            throw ConfigurationError(
                source: "listener \(listener.name)", key: "address", value: "\(listener.address)",
                problem: "already served by another process\(pids); stop it first, or set listener.address_in_use = \"share\" to serve beside it")
        }
    }

    /// Pids of other processes with a socket on `address`; [-1] for a socket whose
    /// holder cannot be seen (another user's, without the right to look).
    static func others(on address: ListenerAddress) -> [pid_t] {
        let table: (name: String, listening: String, family: Int32)
        let host: String
        let port: UInt16
        switch address {
        case .tcp(let name, let number):
            (host, port) = (name, number)
            table = name.contains(":") ? ("tcp6", "0A", AF_INET6) : ("tcp", "0A", AF_INET)
        case .udp(let name, let number):
            (host, port) = (name, number)
            table = name.contains(":") ? ("udp6", "07", AF_INET6) : ("udp", "07", AF_INET)
        case .unix:
            return []
        }
        guard let wanted = bytes(of: host, family: table.family),
            let text = try? FileContents.read("/proc/net/\(table.name)")
        else { return [] }
        var inodes: Set<String> = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 9, fields[3] == table.listening else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, UInt16(local[1], radix: 16) == port, let bound = procBytes(local[0]) else { continue }
            let wildcard = { (bytes: [UInt8]) in bytes.allSatisfy { $0 == 0 } }
            if bound == wanted || wildcard(bound) || wildcard(wanted) {
                inodes.insert(String(fields[9]))
            }
        }
        inodes.subtract(socketInodes(of: "self"))
        guard !inodes.isEmpty else { return [] }
        let me = getpid()
        var holders: [pid_t] = []
        for pid in processes() where pid != me && !socketInodes(of: "\(pid)").isDisjoint(with: inodes) {
            holders.append(pid)
        }
        return holders.isEmpty ? [-1] : holders
    }

    /// An address as the kernel stores it (network byte order).
    private static func bytes(of host: String, family: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: family == AF_INET6 ? 16 : 4)
        return inet_pton(family, host, &buffer) == 1 ? buffer : nil
    }

    /// `/proc/net` writes an address as 32-bit words in hexadecimal, each the word's
    /// value as the machine reads it.
    private static func procBytes(_ hex: Substring) -> [UInt8]? {
        guard hex.count == 8 || hex.count == 32 else { return nil }
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<next], radix: 16) else { return nil }
            withUnsafeBytes(of: word) { result.append(contentsOf: $0) }
            index = next
        }
        return result
    }

    private static func socketInodes(of process: String) -> Set<String> {
        var inodes: Set<String> = []
        guard let directory = opendir("/proc/\(process)/fd") else { return inodes }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            guard let target = try? FileContents.link("/proc/\(process)/fd/\(name)"), target.hasPrefix("socket:[") else { continue }
            inodes.insert(String(target.dropFirst(8).dropLast()))
        }
        return inodes
    }

    private static func processes() -> [pid_t] {
        var pids: [pid_t] = []
        guard let directory = opendir("/proc") else { return pids }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            if let pid = pid_t(name) { pids.append(pid) }
        }
        return pids
    }
}
