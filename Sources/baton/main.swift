import ArgumentParser
import Baton
import Logging

// Before anything else creates a thread: every thread must inherit the blocked signals.
Supervisor.prepareProcess()
do {
    // --help throws a clean exit, which exit(withError:) prints.
    try BatonCommand.parse().supervise()
} catch {
    BatonCommand.exit(withError: error)
}

struct BatonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton",
        abstract: "Run a server's workers on sockets Baton holds, and reload them with zero dropped connections.",
        discussion: """
            baton --listen http=tcp://0.0.0.0:8080 --workers 4 -- ./server --flag
            baton --config /etc/app/baton.toml

            SIGHUP or `batonctl reload` reloads; SIGTERM or SIGINT drains and exits.
            """)

    @Option(name: .shortAndLong, help: "A TOML configuration file (instead of the one-line options).")
    var config: String?

    @Option(name: .customLong("listen"), help: "A listener, NAME=ADDRESS: tcp://HOST:PORT, tcp://[IPv6]:PORT, udp://HOST:PORT or unix:///PATH. Repeatable.")
    var listen: [String] = []

    @Option(help: "Number of worker slots.")
    var workers = 1

    @Option(name: .customLong("ready"), help: "Readiness: notify, delay:DURATION or exec:COMMAND.")
    var readiness: String?

    @Option(help: "How long a worker may take to become ready (default 60s).")
    var readyTimeout: String?

    @Option(help: "Signal that tells a worker to drain (default TERM).")
    var drainSignal: String?

    @Option(help: "How long a draining worker may take before it is killed (default 30s).")
    var drainTimeout: String?

    @Option(help: "Worker output: inherit, or prefix each line with its generation and slot.")
    var output: String?

    @Option(name: .customLong("protocol"), help: "How workers find their sockets: systemd (default), einhorn, server-starter, preload or none. {fd:NAME} in the command is replaced with listener NAME's descriptor in any case.")
    var socketProtocol: String?

    @Option(help: "With --protocol preload: the preload library (default: libbaton-preload.so beside baton).")
    var preloadLibrary: String?

    @Option(name: .customLong("control"), help: "Path of the control socket.")
    var controlSocket: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: Logger.Level = .info

    @Argument(parsing: .postTerminator, help: "The worker command, after --.")
    var command: [String] = []

    func validate() throws {
        if config != nil && !(command.isEmpty && listen.isEmpty) {
            throw ValidationError("give either --config or a command with --listen options, not both")
        }
        if config == nil && command.isEmpty {
            throw ValidationError("give a worker command after --, or --config FILE")
        }
    }

    func supervise() throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let source: ConfigurationSource
        if let config {
            source = .file(path: config, defaultControlSocket: controlSocket ?? ControlSocketPath.default())
        } else {
            var oneLine = CommandLineConfiguration()
            oneLine.listen = listen
            oneLine.workers = workers
            oneLine.readiness = readiness
            oneLine.readyTimeout = readyTimeout
            oneLine.drainSignal = drainSignal
            oneLine.drainTimeout = drainTimeout
            oneLine.output = output
            oneLine.socketProtocol = socketProtocol
            oneLine.preloadLibrary = preloadLibrary
            oneLine.controlSocket = controlSocket
            oneLine.command = command
            source = .fixed(try oneLine.configuration())
        }
        let code = try Supervisor.run(source, logger: Logger(label: "baton"))
        throw ExitCode(code)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
