import Glibc

/// The one-line form: `baton --listen http=tcp://0.0.0.0:8080 --workers 4 -- ./server`.
public struct CommandLineConfiguration: Sendable {
    /// `NAME=ADDRESS` each.
    public var listen: [String] = []
    public var command: [String] = []
    /// The options' values as given, by option name.
    private var options: [String: String] = [:]

    public init() {}

    /// The value given for `setting`'s option, as text.
    public subscript<Root, Value>(setting: Setting<Root, Value>) -> String? {
        get { options[setting.option] }
        set { options[setting.option] = newValue }
    }

    /// The options given, as written on the command line (`--workers`), sorted.
    public var givenOptions: [String] {
        options.keys.sorted().map { "--\($0)" }
    }

    public func configuration() throws(ConfigurationError) -> Configuration {
        var listeners: [ListenerConfiguration] = []
        for text in listen {
            guard let equals = text.firstIndex(of: "=") else {
                throw error("--listen", text, problem: "expected NAME=ADDRESS, such as http=tcp://0.0.0.0:8080")
            }
            do throws(SettingProblem) {
                listeners.append(
                    ListenerConfiguration(
                        name: try Settings.listenerName.value(.text(String(text[..<equals]))),
                        address: try Settings.listenerAddress.value(.text(String(text[text.index(after: equals)...])))))
            } catch {
                throw self.error("--listen", text, problem: error.message(.commandLine))
            }
        }
        var workers = WorkerConfiguration(command: command)
        try read(Settings.workers, into: &workers)
        var configuration = Configuration(listeners: listeners, workers: workers, controlSocket: ControlSocketPath.default())
        try read(Settings.configuration, into: &configuration)
        try configuration.validate(source: Self.source)
        return configuration
    }

    private static let source = "command line"

    private func error(_ option: String, _ value: String, problem: String) -> ConfigurationError {
        ConfigurationError(source: Self.source, key: option, value: value, problem: problem)
    }

    /// Sets in `root` each of `settings` an option gives.
    private func read<Root>(_ settings: [any AnySetting<Root>], into root: inout Root) throws(ConfigurationError) {
        for setting in settings {
            guard case .option(let option) = setting.commandLine, let text = options[option] else { continue }
            do {
                try setting.apply(.text(text), to: &root)
            } catch {
                throw self.error("--\(option)", text, problem: error.message(.commandLine))
            }
        }
    }
}
