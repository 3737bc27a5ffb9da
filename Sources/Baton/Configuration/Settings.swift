import Glibc

/// Every setting of a Baton configuration, each declared once: its key in the file, its
/// command-line option, what it accepts, its default, and the field it sets. The lists
/// at the end of each table are what the readers and Docs/configuration.md go through,
/// in the order the readers check them.
public enum Settings {
    // MARK: - The file's top level

    public static let controlSocket = Setting<Configuration, String>(
        "control_socket", \.controlSocket, .string("path"),
        commandLine: .option("control"), default: .described("see Docs/control-protocol.md"),
        help: "Path of the control socket")

    public static let metrics = Setting<Configuration, ListenerAddress>(
        "metrics", \.metrics, .tcpAddress,
        commandLine: .option("metrics"), default: .described("off"),
        help:
            "Where Baton serves its own metrics, GET /metrics in Prometheus' text format (Docs/metrics.md); a reload that changes it moves the endpoint once the new generation takes over"
    )

    public static let stopDelay = Setting<Configuration, Duration>(
        "stop_delay", \.stopDelay, .duration(in: .zero...longestDuration),
        commandLine: .option("stop-delay"), default: .described("none"),
        help:
            "On SIGTERM or batonctl stop, how long the workers keep serving, with /ready answering 503, before they drain: the time a load balancer or Kubernetes' endpoints take to stop sending new connections"
    )

    static let controlGroup = Setting<Configuration, SystemGroup>(
        "control_group", \.controlGroup, .controlGroup,
        default: .described("none: only root and Baton's user"),
        help:
            "Members of this group may reload, scale, promote or roll back a canary, and see the status through the control socket, which becomes mode 0660 with this group"
    )

    static let controlReadOnlyGroup = Setting<Configuration, SystemGroup>(
        "control_readonly_group", \.controlReadOnlyGroup, .controlGroup,
        default: .described("none"),
        help: "Members of this group may see the status through the control socket, which an ACL entry opens to them (the file system must support POSIX ACLs)")

    static let configuration: [any AnySetting<Configuration>] = [controlSocket, metrics, stopDelay, controlGroup, controlReadOnlyGroup]

    // MARK: - Ranges

    /// The longest timeout, delay or grace a configuration may give: a day. Longer ones
    /// are mistakes, and a bound keeps every sum and doubling of durations far from overflow.
    public static let longestDuration: Duration = .seconds(24 * 3600)
    /// The shortest `ready_timeout`: a worker cannot start in less.
    static let shortestReadyTimeout: Duration = .milliseconds(100)
    /// The shortest `restart_delay`: a worker that crashes at once is restarted at most
    /// ten times a second, and less often with each crash in a row.
    static let shortestRestartDelay: Duration = .milliseconds(100)

    // MARK: - [[listener]]

    public static let listenerName = Setting<ListenerConfiguration, String>(
        "name", \.name, .listenerName,
        commandLine: .within("--listen NAME=ADDRESS"), default: .required("every listener needs a name"),
        help: "The listener's name in LISTEN_FDNAMES; a socket systemd passes with this FileDescriptorName= is adopted instead of opening one")

    public static let listenerAddress = Setting<ListenerConfiguration, ListenerAddress>(
        "address", \.address, .address,
        commandLine: .within("--listen NAME=ADDRESS"), default: .required("every listener needs an address"),
        help: "Where the listener's socket is bound")

    static let reusePort = Setting<ListenerConfiguration, ReusePortMode>(
        "reuseport", \.reusePort, .choice { "expected \($0.literal("per-worker")) or \($0.literal("shared"))" },
        default: .described("`per-worker` for tcp and udp, `shared` for unix"),
        help: "`per-worker`: one SO_REUSEPORT socket per slot; `shared`: one socket for all slots",
        check: { mode, listener in
            mode == .shared || listener.address.supportsReusePort ? nil : SettingProblem("unix sockets can only be shared")
        })

    static let backlog = Setting<ListenerConfiguration, Int32>(
        "backlog", \.backlog, .integer(in: 1...Int32.max) { _ in "expected a positive number" },
        default: .described("net.core.somaxconn"),
        help: "The listen() backlog")

    static let socketMode = Setting<ListenerConfiguration, UInt32>(
        "mode", \.socketMode, .fileMode,
        default: .described("as the umask leaves it"),
        help: "Unix sockets only: the socket file's mode",
        requires: SettingRequirement(
            holds: { if case .unix = $0.address { true } else { false } },
            problem: SettingProblem("only unix sockets have a file mode")))

    static let addressInUse = Setting<ListenerConfiguration, AddressInUse>(
        "address_in_use", \.addressInUse, .choice { "expected \($0.literal("refuse")) or \($0.literal("share"))" },
        default: .described("`refuse`"),
        help:
            "When another process already serves the address at start: `refuse` to start, naming the address and its pids, or `share` it (SO_REUSEPORT), both answering; tcp and udp only"
    )

    static let flows = Setting<ListenerConfiguration, Flows>(
        "flows", \.flowMode, .choice { "expected \($0.literal("none")), \($0.literal("tuple")) or \($0.literal("quic"))" },
        default: .described("`none`"),
        help:
            "UDP `per-worker` listeners only: `none` sends every datagram to the serving generation; `tuple` keeps each flow (remote address and port) with the generation its first datagram went to; `quic` also routes QUIC packets by the cookie in their connection ID (BATON_QUIC_COOKIES). Needs the steering program (Docs/steering.md)",
        requires: SettingRequirement(
            holds: { if case .udp = $0.address { $0.reusePort == .perWorker } else { false } },
            problem: SettingProblem("only a udp listener with reuseport = \"per-worker\" has flows")))

    /// How long a flow may go without a datagram by default: longer than QUIC's usual idle timeouts.
    static let defaultFlowIdleTimeout: Duration = .seconds(120)
    static let defaultFlowTableSize = 65536

    static let flowIdleTimeout = Setting<ListenerConfiguration, Duration>(
        "flow_idle_timeout", \.flowIdleTimeout, .duration(in: .seconds(1)...longestDuration),
        default: .value(defaultFlowIdleTimeout),
        help: "With flows: a flow without a datagram for this long is forgotten, and its next datagram goes to the serving generation",
        requires: SettingRequirement(
            holds: { if case .udp = $0.address { true } else { false } },
            problem: SettingProblem("only udp listeners have flows")))

    static let flowTableSize = Setting<ListenerConfiguration, Int>(
        "flow_table_size", \.flowTableSize, .integer(in: 1...16_777_216) { "expected a number of flows from \($0.lowerBound) to \($0.upperBound)" },
        default: .value(defaultFlowTableSize),
        help:
            "With flows: how many flows the listener's flow table holds; when it is full the least recently used flow is forgotten (its next datagram goes to the serving generation). Fixed when the listener's first socket opens",
        requires: SettingRequirement(
            holds: { if case .udp = $0.address { true } else { false } },
            problem: SettingProblem("only udp listeners have flows")))

    static let listener: [any AnySetting<ListenerConfiguration>] = [
        listenerName, listenerAddress, reusePort, backlog, socketMode, addressInUse, flows, flowIdleTimeout, flowTableSize,
    ]

    // MARK: - [workers]

    public static let command = Setting<WorkerConfiguration, [String]>(
        "command", \.command, .command,
        commandLine: .within("-- COMMAND ARGUMENTS..."), default: .required(#"a command is required, such as ["./server", "--flag"]"#),
        help: "The program and its arguments; the program is looked up in PATH when it has no slash, and {fd:NAME} becomes listener NAME's descriptor number")

    /// How many slots a service may have.
    public static let slots = 1...1024

    public static let workerCount = Setting<WorkerConfiguration, Int>(
        "count", \.count, .integer(in: slots) { "expected a number of workers from \($0.lowerBound) to \($0.upperBound)" },
        commandLine: .option("workers"), default: .value(1),
        help: "Number of worker slots")

    static let directory = Setting<WorkerConfiguration, String>(
        "directory", \.directory, .string("path"),
        default: .described("Baton's"),
        help: "The workers' working directory")

    static let environment = Setting<WorkerConfiguration, [String: String]>(
        "environment", \.environment, .table,
        default: .value([:]),
        help: "Variables added to (or replacing in) Baton's own environment")

    public static let readiness = Setting<WorkerConfiguration, Readiness>(
        "readiness", \.readiness, .readiness,
        commandLine: .option("ready"), default: .value(.notify),
        help: "How Baton learns that a worker serves: notify, delay:DURATION or exec:COMMAND")

    public static let readyTimeout = Setting<WorkerConfiguration, Duration>(
        "ready_timeout", \.readyTimeout, .duration(in: shortestReadyTimeout...longestDuration),
        commandLine: .option("ready-timeout"), default: .value(.seconds(60)),
        help: "How long a worker may take to become ready")

    public static let drainTimeout = Setting<WorkerConfiguration, Duration>(
        "drain_timeout", \.drainTimeout, .duration(in: .zero...longestDuration),
        commandLine: .option("drain-timeout"), default: .value(.seconds(30)),
        help: "How long a draining worker may take before it is killed")

    public static let drainGrace = Setting<WorkerConfiguration, Duration>(
        "drain_grace", \.drainGrace, .duration(in: .zero...longestDuration),
        commandLine: .option("drain-grace"), default: .value(.seconds(5)),
        help: "How long a replaced generation, out of rotation, may take to accept what its sockets hold before it gets the drain signal anyway")

    public static let stallTimeout = Setting<WorkerConfiguration, Duration>(
        "stall_timeout", \.stallTimeout, .duration(in: .milliseconds(100)...longestDuration),
        commandLine: .option("stall-timeout"), default: .described("off"),
        help:
            "A serving worker whose steered sockets hold connections and that accepts none for this long leaves its slot and the rotation, what it holds moves to the other slots, it is told to drain, and its slot restarts. Off unless set. Needs steering: without a steered listener it can do nothing, and Baton says so in a warning"
    )

    static let restartDelay = Setting<WorkerConfiguration, Duration>(
        "restart_delay", \.restartDelay, .duration(in: shortestRestartDelay...longestDuration),
        default: .value(.milliseconds(500)),
        help: "The delay before the first restart of a crashed worker; it doubles on each crash in a row")

    static let restartDelayMax = Setting<WorkerConfiguration, Duration>(
        "restart_delay_max", \.restartDelayMax, .duration(in: shortestRestartDelay...longestDuration),
        default: .value(.seconds(30)),
        help: "The longest delay before a restart")

    public static let drainSignal = Setting<WorkerConfiguration, Int32>(
        "drain_signal", \.drainSignal, .drainSignal,
        commandLine: .option("drain-signal"), default: .value(SIGTERM),
        help: "Signal that tells a worker to drain; KILL drains by killing at once")

    public static let output = Setting<WorkerConfiguration, OutputMode>(
        "output", \.output, .choice { "expected \($0.literal("inherit")) or \($0.literal("prefix"))" },
        commandLine: .option("output"), default: .value(.inherit),
        help: "Worker output: inherit, or prefix each line with its generation and slot")

    public static let socketProtocol = Setting<WorkerConfiguration, SocketProtocol>(
        "protocol", \.socketProtocol, .choice { _ in "unknown protocol: expected one of \(SocketProtocol.choices)" },
        commandLine: .option("protocol"), default: .value(.systemd),
        help:
            "How workers find their sockets: systemd, einhorn, server-starter, preload or none. {fd:NAME} in the command is replaced with listener NAME's descriptor in any case"
    )

    public static let preloadLibrary = Setting<WorkerConfiguration, String>(
        "preload_library", \.preloadLibrary, .string("path"),
        commandLine: .option("preload-library"), default: .described("libbaton-preload.so beside baton, else in ../lib/baton from it"),
        help: "With the preload protocol: the library to preload",
        requires: SettingRequirement(
            holds: { $0.socketProtocol == .preload },
            problem: SettingProblem { "only used with \($0.assignment(socketProtocol, SocketProtocol.preload.rawValue))" }))

    public static let user = Setting<WorkerConfiguration, WorkerUser>(
        "user", \.user, .user,
        commandLine: .option("user"), default: .described("Baton's own"),
        help:
            "The user workers run as, with that user's groups and HOME, USER and LOGNAME; any user other than Baton's own needs Baton to run as root (or with CAP_SETUID and CAP_SETGID)"
    )

    public static let group = Setting<WorkerConfiguration, SystemGroup>(
        "group", \.group, .group,
        commandLine: .option("group"), default: .described("the user's primary group"),
        help: "The group workers run as, instead of their user's primary group")

    static let noNewPrivileges = Setting<WorkerConfiguration, Bool>(
        "no_new_privileges", \.noNewPrivileges, .boolean,
        default: .value(false),
        help: "Workers and what they run can never gain privileges (PR_SET_NO_NEW_PRIVS: set-user-ID programs and file capabilities give nothing)")

    static let umask = Setting<WorkerConfiguration, UInt32>(
        "umask", \.umask, .fileMode,
        default: .described("Baton's"),
        help: "The workers' umask, such as `0027`")

    static let limits = Setting<WorkerConfiguration, [ResourceLimit: UInt64]>(
        "limits", \.limits, .limits,
        default: .value([:]),
        help: "Resource limits of each worker (setrlimit, soft and hard), such as { nofile = 65536, core = 0 }; raising one above Baton's own needs root")

    public static let strategy = Setting<WorkerConfiguration, ReloadStrategy>(
        "strategy", \.strategy, .choice { "expected \($0.literal("all-at-once")) or \($0.literal("rolling"))" },
        commandLine: .option("strategy"), default: .value(.allAtOnce),
        help:
            "How a reload replaces the workers: `all-at-once` starts every new worker beside the old ones; `rolling` replaces `batch` slots at a time, so that at most count + batch workers are alive (Docs/rollouts.md)"
    )

    public static let batch = Setting<WorkerConfiguration, Int>(
        "batch", \.batch, .integer(in: slots) { "expected a number of slots from \($0.lowerBound) to \($0.upperBound)" },
        commandLine: .option("batch"), default: .value(1),
        help: "With the rolling strategy: how many slots are replaced at a time (more than count replaces them all in one batch)")

    public static let canaryCheck = Setting<WorkerConfiguration, CanaryCheck>(
        "canary_check", \.canaryCheck, .canaryCheck,
        commandLine: .option("canary-check"), default: .described("none"),
        help:
            "A health check of a canary during its hold: `exec:COMMAND`, run by /bin/sh -c every `canary_check_interval` (with BATON_GENERATION, BATON_SLOT and BATON_WORKER_PID naming the canary's first worker); exit status 0 passes, and `canary_check_failures` failures in a row roll the canary back (Docs/rollouts.md)"
    )

    public static let canaryCheckInterval = Setting<WorkerConfiguration, Duration>(
        "canary_check_interval", \.canaryCheckInterval, .duration(in: .milliseconds(100)...(.seconds(3600))),
        commandLine: .option("canary-check-interval"), default: .value(.seconds(5)),
        help: "How often the canary's health check runs during the hold, from 100ms to 1h; a check still running then is killed and counts as a failure")

    public static let canaryCheckFailures = Setting<WorkerConfiguration, Int>(
        "canary_check_failures", \.canaryCheckFailures, .integer(in: 1...100) { "expected a number of failures from \($0.lowerBound) to \($0.upperBound)" },
        commandLine: .option("canary-check-failures"), default: .value(3),
        help: "How many failures of the canary's health check in a row roll the canary back, from 1 to 100; a pass starts the count again")

    static let workers: [any AnySetting<WorkerConfiguration>] = [
        command, workerCount, directory, environment, readiness, readyTimeout, drainTimeout, drainGrace, stallTimeout, restartDelay,
        restartDelayMax, drainSignal, output, socketProtocol, preloadLibrary, user, group, noNewPrivileges, umask, limits,
        strategy, batch, canaryCheck, canaryCheckInterval, canaryCheckFailures,
    ]
}
