import TOMLKit

/// Reads a TOML configuration file:
///
/// ```toml
/// control_socket = "/run/app/baton.sock"
///
/// [[listener]]
/// name = "http"
/// address = "tcp://0.0.0.0:8080"
/// reuseport = "per-worker"   # or "shared"
/// backlog = 4096
///
/// [workers]
/// command = ["./server", "--port-from-fd"]
/// count = 4
/// readiness = "notify"        # "delay:2s", "exec:curl -fs http://127.0.0.1:8080/health"
/// ready_timeout = "60s"
/// drain_signal = "TERM"
/// drain_timeout = "30s"
/// protocol = "systemd"        # "einhorn", "server-starter", "preload", "none"
/// ```
///
/// Every key is checked; an unknown key is an error, so a typo never goes unnoticed.
public enum ConfigurationFile {
    public static func load(path: String, defaultControlSocket: String) throws(ConfigurationError) -> Configuration {
        let text: String
        do {
            text = try FileContents.read(path)
        } catch {
            throw ConfigurationError(source: path, problem: "cannot read the file: \(error)")
        }
        return try parse(text, source: path, defaultControlSocket: defaultControlSocket)
    }

    public static func parse(_ text: String, source: String, defaultControlSocket: String) throws(ConfigurationError) -> Configuration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(source: "\(source):\(error.source.begin.line):\(error.source.begin.column)",
                                     problem: error.description)
        } catch {
            throw ConfigurationError(source: source, problem: "not valid TOML: \(error)")
        }
        let reader = TableReader(table: root, path: "", source: source)
        try reader.allowOnly(["control_socket", "listener", "workers"])

        var listeners: [ListenerConfiguration] = []
        if let array = root["listener"] {
            guard let array = array.array else {
                throw ConfigurationError(source: source, key: "listener", problem: "use [[listener]] tables")
            }
            for (index, element) in array.enumerated() {
                guard let table = element.table else {
                    throw ConfigurationError(source: source, key: "listener[\(index)]", problem: "expected a table")
                }
                listeners.append(try listener(TableReader(table: table, path: "listener[\(index)].", source: source)))
            }
        }

        guard let workersTable = root["workers"]?.table else {
            throw ConfigurationError(source: source, key: "workers", problem: "a [workers] table is required")
        }
        let workers = try workerConfiguration(TableReader(table: workersTable, path: "workers.", source: source))
        let configuration = Configuration(
            listeners: listeners, workers: workers,
            controlSocket: try reader.string("control_socket") ?? defaultControlSocket)
        try configuration.validate(source: source)
        return configuration
    }

    private static func listener(_ reader: TableReader) throws(ConfigurationError) -> ListenerConfiguration {
        try reader.allowOnly(["name", "address", "reuseport", "backlog", "mode"])
        guard let name = try reader.string("name") else {
            throw reader.error("name", problem: "every listener needs a name")
        }
        guard ListenerName.isValid(name) else {
            throw reader.error("name", value: name.quoted, problem: ListenerName.rule)
        }
        guard let addressText = try reader.string("address") else {
            throw reader.error("address", problem: "every listener needs an address")
        }
        let address: ListenerAddress
        do {
            address = try ListenerAddress(parsing: addressText)
        } catch {
            throw reader.error("address", value: addressText.quoted, problem: error.description)
        }
        var reusePort: ReusePortMode?
        if let text = try reader.string("reuseport") {
            guard let mode = ReusePortMode(rawValue: text) else {
                throw reader.error("reuseport", value: text.quoted, problem: "expected \"per-worker\" or \"shared\"")
            }
            guard mode == .shared || address.supportsReusePort else {
                throw reader.error("reuseport", value: text.quoted, problem: "unix sockets can only be shared")
            }
            reusePort = mode
        }
        var backlog: Int32?
        if let value = try reader.integer("backlog") {
            guard value > 0, value <= Int(Int32.max) else {
                throw reader.error("backlog", value: "\(value)", problem: "expected a positive number")
            }
            backlog = Int32(value)
        }
        var socketMode: UInt32?
        if let text = try reader.string("mode") {
            guard case .unix = address else {
                throw reader.error("mode", value: text.quoted, problem: "only unix sockets have a file mode")
            }
            guard let mode = UInt32(text, radix: 8), mode <= 0o777 else {
                throw reader.error("mode", value: text.quoted, problem: "expected an octal file mode such as \"0660\"")
            }
            socketMode = mode
        }
        return ListenerConfiguration(name: name, address: address, reusePort: reusePort,
                                     backlog: backlog, socketMode: socketMode)
    }

    private static func workerConfiguration(_ reader: TableReader) throws(ConfigurationError) -> WorkerConfiguration {
        try reader.allowOnly([
            "command", "count", "directory", "environment", "readiness", "ready_timeout", "drain_signal",
            "drain_timeout", "restart_delay", "restart_delay_max", "output", "protocol", "preload_library",
        ])
        guard let command = try reader.strings("command"), !command.isEmpty else {
            throw reader.error("command", problem: "a command is required, such as [\"./server\", \"--flag\"]")
        }
        var workers = WorkerConfiguration(command: command)
        if let count = try reader.integer("count") {
            guard WorkerConfiguration.countRange.contains(count) else {
                throw reader.error("count", value: "\(count)", problem: "expected a number of workers from 1 to 1024")
            }
            workers.count = count
        }
        workers.directory = try reader.string("directory")
        if let environment = reader.table["environment"] {
            guard let table = environment.table else {
                throw reader.error("environment", problem: "expected a table of strings, such as { KEY = \"value\" }")
            }
            for key in table.keys {
                guard let value = table[key]?.string else {
                    throw reader.error("environment.\(key)", problem: "expected a string")
                }
                workers.environment[key] = value
            }
        }
        if let text = try reader.string("readiness") {
            do {
                workers.readiness = try Readiness(parsing: text)
            } catch {
                throw reader.error("readiness", value: text.quoted, problem: error.description)
            }
        }
        if let value = try reader.duration("ready_timeout") { workers.readyTimeout = value }
        if let value = try reader.duration("drain_timeout") { workers.drainTimeout = value }
        if let value = try reader.duration("restart_delay") { workers.restartDelay = value }
        if let value = try reader.duration("restart_delay_max") { workers.restartDelayMax = value }
        if let text = try reader.string("drain_signal") {
            guard let signal = SignalName.parse(text) else {
                throw reader.error("drain_signal", value: text.quoted, problem: "unknown signal: use a name such as TERM, QUIT or WINCH")
            }
            workers.drainSignal = signal
        }
        if let text = try reader.string("output") {
            guard let output = OutputMode(rawValue: text) else {
                throw reader.error("output", value: text.quoted, problem: "expected \"inherit\" or \"prefix\"")
            }
            workers.output = output
        }
        if let text = try reader.string("protocol") {
            guard let socketProtocol = SocketProtocol(rawValue: text) else {
                throw reader.error("protocol", value: text.quoted, problem: "unknown protocol: expected one of \(SocketProtocol.choices)")
            }
            workers.socketProtocol = socketProtocol
        }
        if let path = try reader.string("preload_library") {
            guard workers.socketProtocol == .preload else {
                throw reader.error("preload_library", value: path.quoted, problem: "only used with protocol = \"preload\"")
            }
            workers.preloadLibrary = path
        }
        return workers
    }
}

/// Typed access to one TOML table, with errors that name the key and file.
private struct TableReader {
    let table: TOMLTable
    let path: String
    let source: String

    func error(_ key: String, value: String? = nil, problem: String) -> ConfigurationError {
        ConfigurationError(source: source, key: path + key, value: value, problem: problem)
    }

    func allowOnly(_ keys: Set<String>) throws(ConfigurationError) {
        for key in table.keys where !keys.contains(key) {
            throw error(key, problem: "unknown key; known keys here: \(keys.sorted().joined(separator: ", "))")
        }
    }

    func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let value = table[key] else { return nil }
        guard let string = value.string else { throw error(key, value: value.debugDescription, problem: "expected a string") }
        return string
    }

    func integer(_ key: String) throws(ConfigurationError) -> Int? {
        guard let value = table[key] else { return nil }
        guard let integer = value.int else { throw error(key, value: value.debugDescription, problem: "expected an integer") }
        return integer
    }

    func strings(_ key: String) throws(ConfigurationError) -> [String]? {
        guard let value = table[key] else { return nil }
        if let string = value.string {
            return [string]
        }
        guard let array = value.array else {
            throw error(key, value: value.debugDescription, problem: "expected an array of strings")
        }
        var strings: [String] = []
        for element in array {
            guard let string = element.string else {
                throw error(key, value: element.debugDescription, problem: "expected an array of strings")
            }
            strings.append(string)
        }
        return strings
    }

    func duration(_ key: String) throws(ConfigurationError) -> Duration? {
        guard let text = try string(key) else { return nil }
        guard let duration = DurationFormat.parse(text) else {
            throw error(key, value: text.quoted, problem: "expected a duration such as \"30s\", \"500ms\" or \"2m\"")
        }
        return duration
    }
}
