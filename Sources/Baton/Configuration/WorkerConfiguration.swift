/// How every worker of the service is run. What each field accepts, and its default,
/// is declared in ``Settings``.
public struct WorkerConfiguration: Sendable, Equatable, Codable {
    /// Program and arguments; the program is looked up in `PATH` when it has no slash.
    var command: [String]
    var count: Int = Settings.workerCount.defaultValue
    var directory: String?
    /// Added to (or replacing in) Baton's own environment.
    var environment: [String: String] = Settings.environment.defaultValue
    var readiness: Readiness = Settings.readiness.defaultValue
    var readyTimeout: Duration = Settings.readyTimeout.defaultValue
    var drainSignal: Int32 = Settings.drainSignal.defaultValue
    var drainTimeout: Duration = Settings.drainTimeout.defaultValue
    /// How long a generation out of rotation may take to accept what its sockets hold
    /// before it gets the drain signal anyway.
    var drainGrace: Duration = Settings.drainGrace.defaultValue
    /// With steering: how long a serving worker may leave connections in its sockets
    /// without accepting any before it is taken out of rotation and replaced; nil: never.
    var stallTimeout: Duration?
    /// First delay before restarting a crashed worker; doubles on each crash in a row.
    var restartDelay: Duration = Settings.restartDelay.defaultValue
    var restartDelayMax: Duration = Settings.restartDelayMax.defaultValue
    var output: OutputMode = Settings.output.defaultValue
    /// How the workers learn which descriptors are their sockets.
    var socketProtocol: SocketProtocol = Settings.socketProtocol.defaultValue
    /// With `.preload`: the library to preload; nil takes `libbaton-preload.so` beside
    /// the `baton` executable.
    var preloadLibrary: String?
    /// The user and group workers run as; nil: Baton's.
    var user: WorkerUser?
    var group: SystemGroup?
    var noNewPrivileges: Bool = Settings.noNewPrivileges.defaultValue
    /// The workers' umask; nil: Baton's.
    var umask: UInt32?
    var limits: [ResourceLimit: UInt64] = Settings.limits.defaultValue
    /// How a reload replaces the workers.
    var strategy: ReloadStrategy = Settings.strategy.defaultValue
    /// With the rolling strategy: how many slots are replaced at a time.
    var batch: Int = Settings.batch.defaultValue
    /// A canary's health check during its hold; nil: none.
    var canaryCheck: CanaryCheck?
    /// How often the canary's health check runs (and how long one run may take).
    var canaryCheckInterval: Duration = Settings.canaryCheckInterval.defaultValue
    /// How many failed checks in a row roll the canary back.
    var canaryCheckFailures: Int = Settings.canaryCheckFailures.defaultValue

    init(command: [String]) {
        self.command = command
    }
}

extension WorkerConfiguration {
    /// Reads a configuration that an older Baton may have written, in the handover of
    /// `batonctl upgrade`: a field it did not know yet takes its default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(command: try container.decode([String].self, forKey: .command))
        func read<Value: Decodable>(_ key: CodingKeys, _ field: WritableKeyPath<Self, Value>) throws {
            if let value = try container.decodeIfPresent(Value.self, forKey: key) { self[keyPath: field] = value }
        }
        try read(.count, \.count)
        directory = try container.decodeIfPresent(String.self, forKey: .directory)
        try read(.environment, \.environment)
        try read(.readiness, \.readiness)
        try read(.readyTimeout, \.readyTimeout)
        try read(.drainSignal, \.drainSignal)
        try read(.drainTimeout, \.drainTimeout)
        try read(.drainGrace, \.drainGrace)
        stallTimeout = try container.decodeIfPresent(Duration.self, forKey: .stallTimeout)
        try read(.restartDelay, \.restartDelay)
        try read(.restartDelayMax, \.restartDelayMax)
        try read(.output, \.output)
        try read(.socketProtocol, \.socketProtocol)
        preloadLibrary = try container.decodeIfPresent(String.self, forKey: .preloadLibrary)
        user = try container.decodeIfPresent(WorkerUser.self, forKey: .user)
        group = try container.decodeIfPresent(SystemGroup.self, forKey: .group)
        try read(.noNewPrivileges, \.noNewPrivileges)
        umask = try container.decodeIfPresent(UInt32.self, forKey: .umask)
        try read(.limits, \.limits)
        try read(.strategy, \.strategy)
        try read(.batch, \.batch)
        canaryCheck = try container.decodeIfPresent(CanaryCheck.self, forKey: .canaryCheck)
        try read(.canaryCheckInterval, \.canaryCheckInterval)
        try read(.canaryCheckFailures, \.canaryCheckFailures)
    }
}
