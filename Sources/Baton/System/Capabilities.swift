import CBatonShim
import Glibc
import Logging

/// What a root Baton whose workers run as another user keeps of root's capabilities:
/// only what it needs (Docs/security.md, "Baton's own capabilities"). The workers never
/// had root's capabilities (they lose them with their uid), so the rest served no one
/// but an attacker who took Baton over. Dropped once, at start, from Baton's own sets
/// and from its bounding set, so that nothing it later starts (an upgrade in place)
/// gets them back; a Baton whose workers run as root keeps everything, since they
/// inherit what it has.
enum Capabilities {
    /// By capability number (linux/capability.h), with what each is for.
    static let needed: [(number: Int, name: String, use: String)] = [
        (0, "CAP_CHOWN", "hands each worker its notify socket, and the control socket to control_group"),
        (5, "CAP_KILL", "signals workers that run as another user"),
        (6, "CAP_SETGID", "starts each worker with its groups"),
        (7, "CAP_SETUID", "starts each worker as its user"),
        (10, "CAP_NET_BIND_SERVICE", "binds listeners on ports below 1024"),
        (39, "CAP_BPF", "loads the steering program"),
    ]
    /// Kept too when `limits` may raise a worker's limit above Baton's own.
    static let resource = (number: 24, name: "CAP_SYS_RESOURCE")

    /// Drops every capability but the needed ones when Baton runs as root and its
    /// workers as another user; does nothing otherwise. Returns what was kept, for the
    /// log, or nil when nothing was done.
    static func keepOnlyNeeded(for workers: WorkerConfiguration) throws(CapabilityError) -> [String]? {
        guard geteuid() == 0, let user = workers.user, user.uid != 0 else { return nil }
        var kept = needed.map { ($0.number, $0.name) }
        if !workers.limits.isEmpty { kept.append((resource.number, resource.name)) }
        let mask = kept.reduce(UInt64(0)) { $0 | (1 << UInt64($1.0)) }
        let failed = baton_keep_capabilities(mask)
        guard failed == 0 else { throw CapabilityError(errno: failed) }
        // What Baton never had (a bounding set without it) it does not keep either.
        let bounding = boundingSet() ?? .max
        return kept.filter { bounding & (1 << UInt64($0.0)) != 0 }.map(\.1)
    }

    /// Baton's bounding set, from `/proc/self/status`.
    static func boundingSet() -> UInt64? {
        guard let status = try? FileContents.read("/proc/self/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapBnd:") })
        else { return nil }
        return UInt64(line.dropFirst("CapBnd:".count).trimmingCharacters(in: .whitespaces), radix: 16)
    }
}

struct CapabilityError: Error, CustomStringConvertible {
    var errno: Int32
    var description: String {
        "could not drop the capabilities Baton does not need: \(String(cString: strerror(errno)))"
    }
}
