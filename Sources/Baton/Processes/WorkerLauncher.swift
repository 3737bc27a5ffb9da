import Glibc
import Logging
import Synchronization

/// Starts worker processes: the slot's sockets at fd 3, 4, …, the environment its
/// socket protocol defines, its own `NOTIFY_SOCKET`, and its output, inherited or
/// through a relay that prefixes each line.
struct WorkerLauncher {
    /// Set once the warning that JSON logs do not wrap inherited output has been logged.
    private static let warnedOfInheritedOutput = Atomic<Bool>(false)

    /// Baton's own environment less what belongs to Baton alone; every worker starts from it.
    let environment: [String: String]
    let logger: Logger

    init(environment: [String: String] = ProcessSpawner.inheritedEnvironment(), logger: Logger) {
        self.environment = environment
        self.logger = logger
    }

    /// What `worker` is started with. Pure, so that what a worker receives is tested
    /// without starting one.
    ///
    /// - Parameters:
    ///   - sockets: the slot's sockets in listener order.
    ///   - notifyAddress: the worker's `NOTIFY_SOCKET`.
    ///   - preloadLibrary: for `protocol = "preload"`, the library's path.
    func request(
        for worker: WorkerID, _ configuration: Configuration, sockets: [(name: String, fd: Int32)],
        notifyAddress: String, preloadLibrary: String = ""
    ) -> ProcessSpawner.Request {
        let settings = configuration.workers
        var environment = environment
        if let user = settings.user {
            environment["HOME"] = user.home
            environment["USER"] = user.name
            environment["LOGNAME"] = user.name
        }
        environment.merge(settings.environment) { $1 }
        let listeners = sockets.compactMap { socket in configuration.listeners.first { $0.name == socket.name } }
        let handoff = SocketHandoff(
            settings.socketProtocol, command: settings.command, listeners: listeners,
            generation: worker.generation, slot: worker.slot, supervisorPID: getpid(),
            preloadLibrary: preloadLibrary, inheritedPreload: environment["LD_PRELOAD"], drainSignal: settings.drainSignal)
        environment.merge(handoff.environment) { $1 }
        environment[WorkerContract.Systemd.notifySocket] = notifyAddress
        environment[WorkerContract.generation] = "\(worker.generation)"
        environment[WorkerContract.slot] = "\(worker.slot)"
        if listeners.contains(where: { $0.flows == .quic }) {
            environment[WorkerContract.quicCookies] = zip(listeners, sockets)
                .map { listener, socket in listener.flows == .quic ? QuicCookie.of(socket.fd) ?? "" : "" }
                .joined(separator: ":")
        }
        return ProcessSpawner.Request(
            command: handoff.command, environment: environment, directory: settings.directory,
            sockets: sockets.map(\.fd), processIDVariable: handoff.processIDVariable,
            parentDeathSignal: settings.drainSignal, credentials: settings.credentials,
            noNewPrivileges: settings.noNewPrivileges, umask: settings.umask, limits: settings.limits)
    }

    /// Starts `worker` and returns its pid. Throws, having started nothing, when the
    /// preload library is missing or fork or exec fails.
    func launch(
        _ worker: WorkerID, _ configuration: Configuration, sockets: [(name: String, fd: Int32)],
        notifyAddress: String
    ) throws -> (pid: pid_t, standardError: OutputRelay?) {
        let settings = configuration.workers
        var preloadLibrary = ""
        if settings.socketProtocol == .preload {
            preloadLibrary = settings.preloadLibrary ?? PreloadLibrary.besideExecutable()
            guard access(preloadLibrary, R_OK) == 0 else {
                throw SpawnError.preloadLibraryUnreadable(path: preloadLibrary, errno: errno)
            }
        }
        var request = request(
            for: worker, configuration, sockets: sockets, notifyAddress: notifyAddress,
            preloadLibrary: preloadLibrary)
        // The relays' write ends belong to the worker alone once it has them.
        var writeEnds: [Int32] = []
        var relays: [OutputRelay] = []
        defer { writeEnds.forEach { _ = close($0) } }
        if settings.output == .prefix {
            do {
                let stdout = try OutputRelay.start(worker, target: STDOUT_FILENO)
                writeEnds.append(stdout.fd)
                relays.append(stdout.relay)
                let stderr = try OutputRelay.start(worker, target: STDERR_FILENO)
                writeEnds.append(stderr.fd)
                relays.append(stderr.relay)
                (request.stdout, request.stderr) = (stdout.fd, stderr.fd)
            } catch {
                logger.warning("worker \(worker) output is not prefixed: \(error)", metadata: LogMetadata.worker(worker))
            }
        }
        if settings.output == .inherit, LogLineHandler.format == .json,
            !Self.warnedOfInheritedOutput.exchange(true, ordering: .relaxed)
        {
            logger.warning(
                "workers' output is inherited as they write it (output = \"inherit\"): with --log-format json their lines are not wrapped, so a reader cannot tell them from Baton's; set output = \"prefix\" to wrap each line as a JSON object"
            )
        }
        let pid = try ProcessSpawner.spawn(request)
        relays.forEach { $0.started(pid) }
        return (pid, relays.last)
    }
}
