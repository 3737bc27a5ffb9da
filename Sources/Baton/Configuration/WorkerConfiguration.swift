/// How every worker of the service is run. What each field accepts, and its default,
/// is declared in ``Settings``.
public struct WorkerConfiguration: Sendable, Equatable, Codable {
    /// Program and arguments; the program is looked up in `PATH` when it has no slash.
    public var command: [String]
    public var count: Int = Settings.workerCount.defaultValue
    public var directory: String?
    /// Added to (or replacing in) Baton's own environment.
    public var environment: [String: String] = Settings.environment.defaultValue
    public var readiness: Readiness = Settings.readiness.defaultValue
    public var readyTimeout: Duration = Settings.readyTimeout.defaultValue
    public var drainSignal: Int32 = Settings.drainSignal.defaultValue
    public var drainTimeout: Duration = Settings.drainTimeout.defaultValue
    /// How long a generation out of rotation may take to accept what its sockets hold
    /// before it gets the drain signal anyway.
    public var drainGrace: Duration = Settings.drainGrace.defaultValue
    /// First delay before restarting a crashed worker; doubles on each crash in a row.
    public var restartDelay: Duration = Settings.restartDelay.defaultValue
    public var restartDelayMax: Duration = Settings.restartDelayMax.defaultValue
    public var output: OutputMode = Settings.output.defaultValue
    /// How the workers learn which descriptors are their sockets.
    public var socketProtocol: SocketProtocol = Settings.socketProtocol.defaultValue
    /// With `.preload`: the library to preload; nil takes `libbaton-preload.so` beside
    /// the `baton` executable.
    public var preloadLibrary: String?

    public init(command: [String]) {
        self.command = command
    }
}
