import Glibc

/// The one-line form: `baton --listen http=tcp://0.0.0.0:8080 --workers 4 -- ./server`.
public struct CommandLineConfiguration: Sendable {
    /// `NAME=URL` each.
    public var listen: [String] = []
    public var workers = 1
    public var readiness: String?
    public var readyTimeout: String?
    public var drainSignal: String?
    public var drainTimeout: String?
    public var output: String?
    public var socketProtocol: String?
    public var preloadLibrary: String?
    public var controlSocket: String?
    public var command: [String] = []

    public init() {}

    public func configuration() throws(ConfigurationError) -> Configuration {
        let source = "command line"
        func error(_ option: String, _ value: String, _ problem: String) -> ConfigurationError {
            ConfigurationError(source: source, key: option, value: value, problem: problem)
        }
        var listeners: [ListenerConfiguration] = []
        for text in listen {
            guard let equals = text.firstIndex(of: "=") else {
                throw error("--listen", text, "expected NAME=ADDRESS, such as http=tcp://0.0.0.0:8080")
            }
            let name = String(text[..<equals])
            guard ListenerName.isValid(name) else { throw error("--listen", text, ListenerName.rule) }
            do {
                let address = try ListenerAddress(parsing: String(text[text.index(after: equals)...]))
                listeners.append(ListenerConfiguration(name: name, address: address))
            } catch {
                throw ConfigurationError(source: source, key: "--listen", value: text, problem: error.description)
            }
        }
        var workers = WorkerConfiguration(command: command)
        guard (1...1024).contains(self.workers) else {
            throw error("--workers", "\(self.workers)", "expected a number of workers from 1 to 1024")
        }
        workers.count = self.workers
        if let readiness {
            do {
                workers.readiness = try ReadinessFormat.parse(readiness)
            } catch {
                throw ConfigurationError(source: source, key: "--ready", value: readiness, problem: error.description)
            }
        }
        for (option, text, keyPath) in [("--ready-timeout", readyTimeout, \WorkerConfiguration.readyTimeout),
                                        ("--drain-timeout", drainTimeout, \WorkerConfiguration.drainTimeout)] {
            guard let text else { continue }
            guard let duration = DurationFormat.parse(text) else {
                throw error(option, text, "expected a duration such as 30s, 500ms or 2m")
            }
            workers[keyPath: keyPath] = duration
        }
        if let drainSignal {
            guard let signal = SignalName.parse(drainSignal) else {
                throw error("--drain-signal", drainSignal, "unknown signal: use a name such as TERM, QUIT or WINCH")
            }
            workers.drainSignal = signal
        }
        if let output {
            guard let mode = OutputMode(rawValue: output) else {
                throw error("--output", output, "expected inherit or prefix")
            }
            workers.output = mode
        }
        if let socketProtocol {
            guard let value = SocketProtocol(rawValue: socketProtocol) else {
                throw error("--protocol", socketProtocol, "unknown protocol: expected one of \(SocketProtocol.choices)")
            }
            workers.socketProtocol = value
        }
        if let preloadLibrary {
            guard workers.socketProtocol == .preload else {
                throw error("--preload-library", preloadLibrary, "only used with --protocol preload")
            }
            workers.preloadLibrary = preloadLibrary
        }
        let configuration = Configuration(listeners: listeners, workers: workers,
                                          controlSocket: controlSocket ?? ControlSocketPath.default())
        try configuration.validate(source: source)
        return configuration
    }
}
