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
