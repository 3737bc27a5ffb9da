import Glibc

/// How many file descriptors a configuration needs Baton to hold at once, and the
/// descriptor limit (`RLIMIT_NOFILE`) that makes room for them.
///
/// Baton holds, at the worst moment of a reload, two generations' sockets of every
/// listener, each steered group's program and maps, and a few descriptors per worker
/// (notify socket, output pipe, pidfd). A configuration that needs more than the soft
/// limit raises it, up to the hard limit; one that needs more than the hard limit is
/// refused naming both, before anything is opened, instead of failing half-way with
/// `EMFILE` (which would turn steering off or roll every reload back).
struct DescriptorBudget: Sendable, Equatable {
    /// Listening sockets of two generations.
    var sockets = 0
    /// Steering programs and their maps.
    var steering = 0
    /// Notify sockets, output pipes and pidfds of two generations of workers.
    var workers = 0

    /// Baton's own: the control socket, `/metrics`, the event loops, signals, the notify
    /// directory, log output. (Control and /metrics connections shrink to fit the limit.)
    static let own = 32
    /// A steered group's program and its nine maps (the flow maps are made for every
    /// group, so that a reload can turn `flows` on).
    static let perSteeredGroup = 10
    /// A worker's notify socket, output pipe and pidfd, with room to spare.
    static let perWorker = 4

    init(_ configuration: Configuration) {
        let count = configuration.workers.count
        for listener in configuration.listeners {
            let perWorker = listener.reusePort == .perWorker && listener.address.supportsReusePort
            sockets += 2 * (perWorker ? count : 1)
            if perWorker { steering += Self.perSteeredGroup }
        }
        workers = 2 * count * Self.perWorker
    }

    var total: Int { Self.own + sockets + steering + workers }

    var description: String {
        "about \(total) file descriptors (\(sockets) sockets for two generations, \(steering) for steering, \(workers) for workers, \(Self.own) of Baton's own)"
    }

    /// Raises Baton's soft descriptor limit to make room for this budget with some to
    /// spare, up to the hard limit; throws when even the hard limit is too low.
    func reserve(source: String, listeners: Int) throws(ConfigurationError) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0,
            let soft = try softLimit(current: limit.rlim_cur, hard: limit.rlim_max, source: source, listeners: listeners)
        else { return }
        var raised = limit
        raised.rlim_cur = soft
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 else {
            throw ConfigurationError(
                source: source, key: "listener", value: "\(listeners) listeners",
                problem: "this needs \(description), but Baton's descriptor limit (RLIMIT_NOFILE) is \(limit.rlim_cur) "
                    + "and raising it failed: \(String(cString: strerror(errno)))")
        }
    }

    /// The soft limit to set for this budget, given the limits in force: nil when the
    /// current one is enough, else the needed count and half again, capped by `hard`.
    func softLimit(current: rlim_t, hard: rlim_t, source: String, listeners: Int) throws(ConfigurationError) -> rlim_t? {
        let needed = rlim_t(total)
        guard current < needed else { return nil }
        guard hard >= needed else {
            throw ConfigurationError(
                source: source, key: "listener", value: "\(listeners) listeners",
                problem: "this needs \(description), but Baton's descriptor limit (RLIMIT_NOFILE) is \(hard) "
                    + "and cannot be raised further; raise it (LimitNOFILE= in the unit, ulimit -n) or use fewer listeners or workers")
        }
        return min(hard, needed + needed / 2)
    }
}
