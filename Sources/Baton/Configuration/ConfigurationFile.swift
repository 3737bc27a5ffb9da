import TOMLKit

/// Reads a TOML configuration file: top-level keys, `[[listener]]` tables and a
/// `[workers]` table, each key one of ``Settings`` (Docs/configuration.md lists them).
///
/// Every key is checked; an unknown key is an error, so a typo never goes unnoticed.
public enum ConfigurationFile {
    /// The largest configuration file Baton reads, 4 MiB: ten thousand listeners take
    /// under 1 MiB, and a larger file would only make a reload slow and Baton big.
    static let maximumSize = 4 * 1024 * 1024

    static func load(path: String, defaultControlSocket: String) throws(ConfigurationError) -> Configuration {
        let bytes: [UInt8]
        do {
            bytes = try FileContents.bytes(path, atMost: maximumSize + 1)
        } catch {
            throw ConfigurationError(source: path, problem: "cannot read the file: \(error)")
        }
        guard bytes.count <= maximumSize else {
            throw ConfigurationError(
                source: path,
                problem: "the file is larger than \(maximumSize) bytes (4 MiB), the largest configuration Baton reads; nothing was read from it")
        }
        return try parse(String(decoding: bytes, as: UTF8.self), source: path, defaultControlSocket: defaultControlSocket)
    }

    package static func parse(_ text: String, source: String, defaultControlSocket: String) throws(ConfigurationError) -> Configuration {
        try TOMLTrial.check(text, source: source)
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                source: "\(source):\(error.source.begin.line):\(error.source.begin.column)",
                problem: error.description)
        } catch {
            throw ConfigurationError(source: source, problem: "not valid TOML: \(error)")
        }
        let reader = TableReader(table: root, path: "", source: source)
        try reader.allowOnly(Settings.configuration, tables: ["listener", "workers"])

        var listeners: [ListenerConfiguration] = []
        if let array = root["listener"] {
            guard let array = array.array else {
                throw ConfigurationError(source: source, key: "listener", problem: "use [[listener]] tables")
            }
            for (index, element) in array.enumerated() {
                guard let table = element.table else {
                    throw ConfigurationError(source: source, key: "listener[\(index)]", problem: "expected a table")
                }
                let reader = TableReader(table: table, path: "listener[\(index)].", source: source)
                try reader.allowOnly(Settings.listener)
                var listener = ListenerConfiguration(
                    name: try reader.required(Settings.listenerName),
                    address: try reader.required(Settings.listenerAddress))
                try reader.read(Settings.listener, into: &listener)
                listeners.append(listener)
            }
        }

        guard let workersTable = root["workers"]?.table else {
            throw ConfigurationError(source: source, key: "workers", problem: "a [workers] table is required")
        }
        let workersReader = TableReader(table: workersTable, path: "workers.", source: source)
        try workersReader.allowOnly(Settings.workers)
        var workers = WorkerConfiguration(command: try workersReader.required(Settings.command))
        try workersReader.read(Settings.workers, into: &workers)

        var configuration = Configuration(listeners: listeners, workers: workers, controlSocket: defaultControlSocket)
        try reader.read(Settings.configuration, into: &configuration)
        try configuration.validate(source: source)
        return configuration
    }
}

/// Reads the settings of one TOML table, with errors that name the key and file.
private struct TableReader {
    let table: TOMLTable
    let path: String
    let source: String

    func error(_ key: String, value: String? = nil, problem: String) -> ConfigurationError {
        ConfigurationError(source: source, key: path + key, value: value, problem: problem)
    }

    /// Checks that every key of the table is one of `settings` or `tables`. An unknown key
    /// gets the one it most likely meant, or the table it belongs in.
    func allowOnly<Root>(_ settings: [any AnySetting<Root>], tables: [String] = []) throws(ConfigurationError) {
        let keys = Set(settings.map(\.key) + tables)
        for key in table.keys.sorted() where !keys.contains(key) {
            if let meant = KeySuggestion.nearest(to: key, among: keys.sorted()) {
                throw error(key, problem: "unknown key; did you mean `\(meant)`?")
            }
            if let home = Self.homes.first(where: { $0.keys.contains(key) && $0.keys != keys }) {
                throw error(key, problem: "unknown key here; `\(key)` belongs in \(home.table)")
            }
            throw error(key, problem: "unknown key; known keys here: \(keys.sorted().joined(separator: ", "))")
        }
    }

    /// Where each key of the file belongs.
    private static let homes: [(table: String, keys: Set<String>)] = [
        ("the top level", Set(Settings.configuration.map(\.key) + ["listener", "workers"])),
        ("[[listener]]", Set(Settings.listener.map(\.key))),
        ("[workers]", Set(Settings.workers.map(\.key))),
    ]

    /// Sets in `root` each of `settings` the table gives, except the required ones.
    func read<Root>(_ settings: [any AnySetting<Root>], into root: inout Root) throws(ConfigurationError) {
        for setting in settings where setting.missing == nil {
            guard let (input, shown) = try input(setting.key, setting.written) else { continue }
            do {
                try setting.apply(input, to: &root)
            } catch {
                throw self.error(setting.key, value: shown, problem: error.message(.file))
            }
        }
    }

    /// The value of a setting without which there is nothing to configure.
    func required<Root, Value>(_ setting: Setting<Root, Value>) throws(ConfigurationError) -> Value {
        guard let missing = setting.missing else { preconditionFailure("\(setting.key) has a default") }
        guard let (input, shown) = try input(setting.key, setting.written), !input.isEmpty else {
            throw error(setting.key, problem: missing)
        }
        do {
            return try setting.value(input)
        } catch {
            throw self.error(setting.key, value: shown, problem: error.message(.file))
        }
    }

    /// What the table gives for `key`, and how an error shows it; nil when it gives nothing.
    private func input(_ key: String, _ kind: SettingInput.Kind) throws(ConfigurationError) -> (SettingInput, shown: String)? {
        guard let value = table[key] else { return nil }
        switch kind {
        case .string:
            guard let string = value.string else { throw error(key, value: value.debugDescription, problem: "expected a string") }
            return (.text(string), string.quoted)
        case .integer:
            guard let integer = value.int else { throw error(key, value: value.debugDescription, problem: "expected an integer") }
            return (.text("\(integer)"), "\(integer)")
        case .boolean:
            guard let boolean = value.bool else { throw error(key, value: value.debugDescription, problem: "expected true or false") }
            return (.text(boolean ? "true" : "false"), boolean ? "true" : "false")
        case .integerTable:
            guard let table = value.table else {
                throw error(key, problem: "expected a table, such as { nofile = 65536, core = 0 }")
            }
            var strings: [String: String] = [:]
            for name in table.keys {
                if let integer = table[name]?.int {
                    strings[name] = "\(integer)"
                } else if let string = table[name]?.string {
                    strings[name] = string
                } else {
                    throw error("\(key).\(name)", problem: "expected an integer")
                }
            }
            return (.table(strings), value.debugDescription)
        case .strings:
            if let string = value.string {
                return (.text(string), string.quoted)
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
            return (.strings(strings), value.debugDescription)
        case .table:
            guard let table = value.table else {
                throw error(key, problem: "expected a table of strings, such as { KEY = \"value\" }")
            }
            var strings: [String: String] = [:]
            for name in table.keys {
                guard let string = table[name]?.string else {
                    throw error("\(key).\(name)", problem: "expected a string")
                }
                strings[name] = string
            }
            return (.table(strings), value.debugDescription)
        }
    }
}
