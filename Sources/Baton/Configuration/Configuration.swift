/// Everything Baton needs to run one service: its listeners and its workers.
///
/// A configuration comes from the command line (``Configuration/init(commandLine:)``)
/// or a TOML file (``ConfigurationFile``); either way it is validated as a whole before
/// anything uses it, so a bad one changes nothing.
public struct Configuration: Sendable, Equatable, Codable {
    public var listeners: [ListenerConfiguration]
    public var workers: WorkerConfiguration
    /// Path of the control socket `batonctl` talks to.
    public var controlSocket: String

    public init(listeners: [ListenerConfiguration], workers: WorkerConfiguration, controlSocket: String) {
        self.listeners = listeners
        self.workers = workers
        self.controlSocket = controlSocket
    }

    /// Checks what single values cannot: the whole must make sense.
    public func validate(source: String) throws(ConfigurationError) {
        var names = Set<String>()
        var addresses = Set<ListenerAddress>()
        for listener in listeners {
            guard names.insert(listener.name).inserted else {
                throw ConfigurationError(source: source, key: "listener.name", value: listener.name.quoted,
                                         problem: "two listeners have this name")
            }
            guard addresses.insert(listener.address).inserted else {
                throw ConfigurationError(source: source, key: "listener.address", value: "\(listener.address)".quoted,
                                         problem: "two listeners have this address")
            }
        }
        if workers.command.isEmpty {
            throw ConfigurationError(source: source, key: "workers.command", value: "[]",
                                     problem: "a command to run is required")
        }
        for argument in workers.command {
            for name in DescriptorPlaceholder.names(in: argument) where !names.contains(name) {
                let known = listeners.map { $0.name.quoted }.joined(separator: ", ")
                throw ConfigurationError(source: source, key: "workers.command", value: argument.quoted,
                                         problem: "{fd:\(name)} names no listener; listeners: \(known.isEmpty ? "none" : known)")
            }
        }
        if workers.restartDelayMax < workers.restartDelay {
            throw ConfigurationError(source: source, key: "workers.restart_delay_max",
                                     value: "\(workers.restartDelayMax)",
                                     problem: "must not be shorter than restart_delay (\(workers.restartDelay))")
        }
    }
}

/// One named socket the service exposes.
public struct ListenerConfiguration: Sendable, Equatable, Codable {
    public var name: String
    public var address: ListenerAddress
    public var reusePort: ReusePortMode
    /// `listen()` backlog; nil takes `net.core.somaxconn`.
    public var backlog: Int32?
    /// File mode of a unix socket's path.
    public var socketMode: UInt32?

    public init(name: String, address: ListenerAddress, reusePort: ReusePortMode? = nil,
                backlog: Int32? = nil, socketMode: UInt32? = nil) {
        self.name = name
        self.address = address
        self.reusePort = reusePort ?? (address.supportsReusePort ? .perWorker : .shared)
        self.backlog = backlog
        self.socketMode = socketMode
    }
}

/// How Baton learns that a worker serves.
public enum Readiness: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The worker sends `READY=1` on `NOTIFY_SOCKET` (the sd_notify protocol).
    case notify
    /// A worker still alive after this long counts as ready.
    case delay(Duration)
    /// This shell command, run repeatedly, exits 0 once the worker serves. It sees
    /// `BATON_WORKER_PID`, `BATON_GENERATION` and `BATON_SLOT`.
    case exec(String)

    public var description: String {
        switch self {
        case .notify: "notify"
        case .delay(let duration): "delay:\(DurationFormat.string(duration))"
        case .exec(let command): "exec:\(command)"
        }
    }
}

/// What happens to the workers' standard output and error.
public enum OutputMode: String, Sendable, Equatable, CaseIterable, Codable {
    /// Workers write to Baton's own stdout and stderr.
    case inherit
    /// Each line is prefixed with `[g<generation>/s<slot>] `.
    case prefix
}

/// How every worker of the service is run.
public struct WorkerConfiguration: Sendable, Equatable, Codable {
    /// Program and arguments; the program is looked up in `PATH` when it has no slash.
    public var command: [String]
    public var count: Int = 1
    public static let countRange = 1...1024
    public var directory: String?
    /// Added to (or replacing in) Baton's own environment.
    public var environment: [String: String] = [:]
    public var readiness: Readiness = .notify
    public var readyTimeout: Duration = .seconds(60)
    public var drainSignal: Int32 = SignalName.terminate
    public var drainTimeout: Duration = .seconds(30)
    /// First delay before restarting a crashed worker; doubles on each crash in a row.
    public var restartDelay: Duration = .milliseconds(500)
    public var restartDelayMax: Duration = .seconds(30)
    public var output: OutputMode = .inherit
    /// How the workers learn which descriptors are their sockets.
    public var socketProtocol: SocketProtocol = .systemd
    /// With `.preload`: the library to preload; nil takes `libbaton-preload.so` beside
    /// the `baton` executable.
    public var preloadLibrary: String?

    public init(command: [String]) {
        self.command = command
    }
}
