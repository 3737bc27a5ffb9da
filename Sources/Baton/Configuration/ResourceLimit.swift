import Glibc

/// A resource limit a worker gets (`limits = { nofile = 65536, core = 0 }`), set as both
/// its soft and hard limit before the worker's credentials change.
public enum ResourceLimit: String, Sendable, Codable, CaseIterable, CodingKeyRepresentable {
    case `as`, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack

    /// The value that means no limit (`"infinity"` in the file).
    static let unlimited = UInt64.max

    var resource: Int32 {
        let resource: __rlimit_resource =
            switch self {
            case .as: RLIMIT_AS
            case .core: RLIMIT_CORE
            case .cpu: RLIMIT_CPU
            case .data: RLIMIT_DATA
            case .fsize: RLIMIT_FSIZE
            case .locks: __RLIMIT_LOCKS
            case .memlock: __RLIMIT_MEMLOCK
            case .msgqueue: __RLIMIT_MSGQUEUE
            case .nice: __RLIMIT_NICE
            case .nofile: RLIMIT_NOFILE
            case .nproc: __RLIMIT_NPROC
            case .rss: __RLIMIT_RSS
            case .rtprio: __RLIMIT_RTPRIO
            case .rttime: __RLIMIT_RTTIME
            case .sigpending: __RLIMIT_SIGPENDING
            case .stack: RLIMIT_STACK
            }
        return Int32(resource.rawValue)
    }
}
