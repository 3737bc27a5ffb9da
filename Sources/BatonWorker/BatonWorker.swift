import BatonCore
import Glibc
import Logging
import ServiceLifecycle
import UnixSignals

/// The few things a server needs to be a Baton worker: its listeners by name, readiness,
/// and the drain as swift-service-lifecycle's graceful shutdown.
///
/// ```swift
/// let listener = try BatonWorker.listener("http", default: .init(host: "127.0.0.1", port: 8080))
/// // … serve on listener.descriptor, then:
/// BatonWorker.notifier.ready()
/// try await BatonWorker.run(services: [server], logger: logger)
/// ```
///
/// It works the same under Baton, under plain systemd socket activation, and standalone,
/// where it binds the default address itself.
public enum BatonWorker {
    /// The listeners this process inherited, or nil when it inherited none.
    ///
    /// Read once from the environment: the protocol's variables are then unset, so that
    /// programs this process starts don't take the sockets for theirs, and the
    /// descriptors are made close-on-exec.
    public static func inheritedListeners() throws(BatonWorkerError) -> InheritedListeners? {
        try inherited.get()
    }

    private static let inherited = Result { () throws(BatonWorkerError) -> InheritedListeners? in
        var environment: [String: String] = [:]
        for name in InheritedListeners.variables {
            if let value = getenv(name) { environment[name] = String(cString: value) }
            unsetenv(name)
        }
        let listeners = try InheritedListeners.parse(environment: environment, processID: getpid())
        for entry in listeners?.entries ?? [] {
            try ListeningSocket.adopt(entry.descriptor, name: entry.name)
        }
        return listeners
    }

    /// The inherited listener called `name`; when nothing was inherited, a socket this
    /// process binds at `address` (with `SO_REUSEPORT` when `reusePort`).
    ///
    /// - Throws: ``BatonWorkerError`` when the inherited sockets are wrong or none is
    ///   called `name`, or when binding fails.
    public static func listener(_ name: String, default address: ListenAddress, reusePort: Bool = false) throws(BatonWorkerError) -> Listener {
        if let inherited = try inheritedListeners() {
            return Listener(name: name, descriptor: try inherited.descriptor(named: name), origin: .inherited(inherited.source))
        }
        let descriptor = try ListeningSocket.bind(address, reusePort: reusePort)
        return Listener(name: name, descriptor: descriptor, origin: .bound(address))
    }

    /// Notifications to the supervisor (`NOTIFY_SOCKET`): ``ServiceNotifier/ready(status:)``
    /// once the worker accepts, ``ServiceNotifier/status(_:)`` as it likes.
    public static let notifier = ServiceNotifier(socketPath: getenv(WorkerContract.Systemd.notifySocket).map { String(cString: $0) })

    /// `BATON_GENERATION` and `BATON_SLOT`, when run by Baton.
    public static let generation: Int? = getenv(WorkerContract.generation).flatMap { Int(String(cString: $0)) }
    public static let slot: Int? = getenv(WorkerContract.slot).flatMap { Int(String(cString: $0)) }

    /// The signals that start the drain by default: `SIGTERM` (Baton's default
    /// `drain_signal`, and systemd's stop signal) and `SIGINT` (Ctrl-C when run by hand).
    /// Configure Baton's `drain_signal` and this list alike.
    public static let defaultDrainSignals: [UnixSignal] = [.sigterm, .sigint]

    /// Runs `services` in a `ServiceGroup` whose graceful shutdown is triggered by the
    /// drain signals, and sends `STOPPING=1` when it begins. Services drain through
    /// swift-service-lifecycle's graceful shutdown (`withGracefulShutdownHandler`,
    /// `gracefulShutdown()`): stop accepting, finish what is in flight, return.
    public static func run(
        services: [any Service],
        drainSignals: [UnixSignal] = defaultDrainSignals,
        logger: Logger
    ) async throws {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services + [DrainNotice(notifier: notifier)],
                gracefulShutdownSignals: drainSignals,
                logger: logger
            )
        )
        try await group.run()
    }
}
