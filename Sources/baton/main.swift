import ArgumentParser
import Baton
import Glibc
import Logging

// Before anything else creates a thread: every thread must inherit the blocked signals.
Supervisor.prepareProcess()
do {
    // --help throws a clean exit, which exit(withError:) prints.
    try BatonCommand.parse().supervise()
} catch let error as ConfigurationError {
    // Its own status, so that a unit can tell it from a crash (RestartPreventExitStatus=78).
    let line = Array("Error: \(error)\n".utf8)
    _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    BatonCommand.exit(withError: ExitCode(BatonCommand.configurationInvalid))
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
            Exit statuses: 0 stopped, 1 fatal error, 64 usage, 78 configuration invalid (Docs/command-line.md).
            """,
        version: BatonVersion.current)

    /// EX_CONFIG, from sysexits.h: the configuration is invalid.
    static let configurationInvalid: Int32 = 78

    @Flag(
        help: "Check the configuration (--config FILE, or the one-line options) and exit: 0 when it is valid, 78 when not. Opens no socket and starts nothing.")
    var check = false

    @Option(name: .shortAndLong, help: "A TOML configuration file (instead of the one-line options).")
    var config: String?

    @Option(name: .customLong("listen"), help: "A listener, NAME=ADDRESS: tcp://HOST:PORT, tcp://[IPv6]:PORT, udp://HOST:PORT or unix:///PATH. Repeatable.")
    var listen: [String] = []

    // The one-line options: names and help come from Baton's table of settings, which
    // also reads their values (`oneLine`).
    @Option(name: .customLong(Settings.workerCount.option), help: ArgumentHelp(Settings.workerCount.optionHelp))
    var workers: Int?

    @Option(name: .customLong(Settings.readiness.option), help: ArgumentHelp(Settings.readiness.optionHelp))
    var readiness: String?

    @Option(name: .customLong(Settings.readyTimeout.option), help: ArgumentHelp(Settings.readyTimeout.optionHelp))
    var readyTimeout: String?

    @Option(name: .customLong(Settings.drainSignal.option), help: ArgumentHelp(Settings.drainSignal.optionHelp))
    var drainSignal: String?

    @Option(name: .customLong(Settings.drainTimeout.option), help: ArgumentHelp(Settings.drainTimeout.optionHelp))
    var drainTimeout: String?

    @Option(name: .customLong(Settings.drainGrace.option), help: ArgumentHelp(Settings.drainGrace.optionHelp))
    var drainGrace: String?

    @Option(name: .customLong(Settings.stallTimeout.option), help: ArgumentHelp(Settings.stallTimeout.optionHelp))
    var stallTimeout: String?

    @Option(name: .customLong(Settings.output.option), help: ArgumentHelp(Settings.output.optionHelp))
    var output: String?

    @Option(name: .customLong(Settings.socketProtocol.option), help: ArgumentHelp(Settings.socketProtocol.optionHelp))
    var socketProtocol: String?

    @Option(name: .customLong(Settings.preloadLibrary.option), help: ArgumentHelp(Settings.preloadLibrary.optionHelp))
    var preloadLibrary: String?

    @Option(name: .customLong(Settings.user.option), help: ArgumentHelp(Settings.user.optionHelp))
    var user: String?

    @Option(name: .customLong(Settings.group.option), help: ArgumentHelp(Settings.group.optionHelp))
    var group: String?

    @Option(name: .customLong(Settings.strategy.option), help: ArgumentHelp(Settings.strategy.optionHelp))
    var strategy: String?

    @Option(name: .customLong(Settings.batch.option), help: ArgumentHelp(Settings.batch.optionHelp))
    var batch: String?

    @Option(name: .customLong(Settings.canaryCheck.option), help: ArgumentHelp(Settings.canaryCheck.optionHelp))
    var canaryCheck: String?

    @Option(name: .customLong(Settings.canaryCheckInterval.option), help: ArgumentHelp(Settings.canaryCheckInterval.optionHelp))
    var canaryCheckInterval: String?

    @Option(name: .customLong(Settings.canaryCheckFailures.option), help: ArgumentHelp(Settings.canaryCheckFailures.optionHelp))
    var canaryCheckFailures: String?

    @Option(name: .customLong(Settings.controlSocket.option), help: ArgumentHelp(Settings.controlSocket.optionHelp))
    var controlSocket: String?

    @Option(name: .customLong(Settings.metrics.option), help: ArgumentHelp(Settings.metrics.optionHelp))
    var metrics: String?

    @Option(name: .customLong(Settings.stopDelay.option), help: ArgumentHelp(Settings.stopDelay.optionHelp))
    var stopDelay: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: Logger.Level = .info

    @Option(help: "Log format: text, or json (one object a line, for log shippers).")
    var logFormat: LogFormat = .text

    @Argument(parsing: .postTerminator, help: "The worker command, after --.")
    var command: [String] = []

    func validate() throws {
        if config != nil && !(command.isEmpty && listen.isEmpty) {
            throw ValidationError("give either --config or a command with --listen options, not both")
        }
        // Only --control has a meaning beside a file (where the file sets none); every
        // other one-line option would be silently overridden by the file.
        let ignored = oneLine.givenOptions.filter { $0 != "--\(Settings.controlSocket.option)" }
        if config != nil && !ignored.isEmpty {
            throw ValidationError(
                "\(ignored.joined(separator: ", ")) \(ignored.count == 1 ? "is" : "are") for the one-line form; with --config, set \(ignored.count == 1 ? "it" : "them") in the file (such as metrics = \"tcp://HOST:PORT\", or count = 4 in [workers]; Docs/configuration.md)"
            )
        }
        if config == nil && command.isEmpty {
            throw ValidationError("give a worker command after --, or --config FILE")
        }
    }

    func supervise() throws {
        // Run by a Baton about to upgrade to this binary: prove that the handover is read, do nothing else.
        if try UpgradeTrial.answerIfAsked() { throw ExitCode.success }
        if check {
            let configuration = try
                (config.map { ConfigurationSource.file(path: $0, defaultControlSocket: controlSocket ?? ControlSocketPath.default()) }
                ?? .fixed(try oneLine.configuration())).load()
            print("\(config ?? "the command line"): valid (\(configuration.summary))")
            throw ExitCode.success
        }
        LogLineHandler.bootstrap(level: logLevel, format: logFormat)
        let source: ConfigurationSource
        if let config {
            source = .file(path: config, defaultControlSocket: controlSocket ?? ControlSocketPath.default())
        } else {
            source = .fixed(try oneLine.configuration())
        }
        let code = try Supervisor.run(source, logger: Logger(label: "baton"))
        throw ExitCode(code)
    }

    /// The one-line options, each with its setting.
    var oneLine: CommandLineConfiguration {
        var oneLine = CommandLineConfiguration()
        oneLine.listen = listen
        oneLine.command = command
        oneLine[Settings.workerCount] = workers.map(String.init)
        oneLine[Settings.readiness] = readiness
        oneLine[Settings.readyTimeout] = readyTimeout
        oneLine[Settings.drainSignal] = drainSignal
        oneLine[Settings.drainTimeout] = drainTimeout
        oneLine[Settings.drainGrace] = drainGrace
        oneLine[Settings.stallTimeout] = stallTimeout
        oneLine[Settings.output] = output
        oneLine[Settings.socketProtocol] = socketProtocol
        oneLine[Settings.preloadLibrary] = preloadLibrary
        oneLine[Settings.user] = user
        oneLine[Settings.group] = group
        oneLine[Settings.strategy] = strategy
        oneLine[Settings.batch] = batch
        oneLine[Settings.canaryCheck] = canaryCheck
        oneLine[Settings.canaryCheckInterval] = canaryCheckInterval
        oneLine[Settings.canaryCheckFailures] = canaryCheckFailures
        oneLine[Settings.controlSocket] = controlSocket
        oneLine[Settings.metrics] = metrics
        oneLine[Settings.stopDelay] = stopDelay
        return oneLine
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
