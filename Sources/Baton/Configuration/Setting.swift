/// One setting of a Baton configuration, declared once in ``Settings``: its key in the
/// file, how the command line gives it, how its value is read and checked, its default,
/// and the field it sets. The file reader, the command-line reader, `baton --help` and
/// the table in Docs/configuration.md all come from these declarations.
public struct Setting<Root, Value: Sendable>: Sendable {
    /// The key in its TOML table, such as `drain_timeout`.
    public let key: String
    public let commandLine: CommandLineSpelling
    /// One sentence for `baton --help` and the documentation.
    public let help: String
    let format: SettingFormat<Value>
    let initial: SettingDefault<Value>
    /// When the setting may be given at all, checked before its value is read.
    let requirement: SettingRequirement<Root>?
    /// A check of the value against the rest of its table.
    let check: (@Sendable (Value, Root) -> SettingProblem?)?
    private let write: @Sendable (inout Root, Value) -> Void

    init(
        _ key: String, _ field: WritableKeyPath<Root, Value> & Sendable, _ format: SettingFormat<Value>,
        commandLine: CommandLineSpelling = .none, default initial: SettingDefault<Value>, help: String,
        requires requirement: SettingRequirement<Root>? = nil,
        check: (@Sendable (Value, Root) -> SettingProblem?)? = nil
    ) {
        self.init(key, format, commandLine, initial, help, requirement, check) { $0[keyPath: field] = $1 }
    }

    /// A setting whose field is nil until it is given.
    init(
        _ key: String, _ field: WritableKeyPath<Root, Value?> & Sendable, _ format: SettingFormat<Value>,
        commandLine: CommandLineSpelling = .none, default initial: SettingDefault<Value>, help: String,
        requires requirement: SettingRequirement<Root>? = nil
    ) {
        self.init(key, format, commandLine, initial, help, requirement, nil) { $0[keyPath: field] = $1 }
    }

    private init(
        _ key: String, _ format: SettingFormat<Value>, _ commandLine: CommandLineSpelling,
        _ initial: SettingDefault<Value>, _ help: String, _ requirement: SettingRequirement<Root>?,
        _ check: (@Sendable (Value, Root) -> SettingProblem?)?,
        write: @escaping @Sendable (inout Root, Value) -> Void
    ) {
        self.key = key
        self.commandLine = commandLine
        self.help = help
        self.format = format
        self.initial = initial
        self.requirement = requirement
        self.check = check
        self.write = write
    }

    /// The value a configuration has when it does not give this setting.
    public var defaultValue: Value {
        guard case .value(let value) = initial else { preconditionFailure("\(key) has no default value") }
        return value
    }

    /// The command-line option's name, without its dashes.
    public var option: String {
        guard case .option(let name) = commandLine else { preconditionFailure("\(key) has no command-line option") }
        return name
    }

    /// The help of the command-line option, with the default.
    public var optionHelp: String {
        defaultDescription.map { "\(help) (default: \($0))." } ?? "\(help)."
    }

    /// Whether `value` is one this setting accepts.
    public func accepts(_ value: Value) -> Bool {
        format.accepts(value)
    }

    /// The value `input` gives, checked on its own.
    func value(_ input: SettingInput) throws(SettingProblem) -> Value {
        let value = try format.parse(input)
        guard format.accepts(value) else { throw format.outOfRange }
        return value
    }
}

/// What every setting of one table tells, whatever the type of its value: what the
/// readers and the documentation need.
protocol AnySetting<Root>: Sendable {
    associatedtype Root
    var key: String { get }
    var commandLine: CommandLineSpelling { get }
    var help: String { get }
    /// What the file writes: a string, an integer, ...
    var written: SettingInput.Kind { get }
    /// The kind of value and the values accepted, in words.
    var valueDescription: String { get }
    /// The default in words; nil when the setting is required.
    var defaultDescription: String? { get }
    /// The default as it is written, when it is one value.
    var defaultValueText: String? { get }
    /// What a reader says when a required setting is missing; nil when it has a default.
    var missing: String? { get }
    /// Reads `input` into `root`, or throws why it cannot.
    func apply(_ input: SettingInput, to root: inout Root) throws(SettingProblem)
}

extension Setting: AnySetting {
    var written: SettingInput.Kind { format.written }
    var valueDescription: String { format.description }

    var defaultDescription: String? {
        switch initial {
        case .value(let value): format.text(value)
        case .described(let text): text
        case .required: nil
        }
    }

    var defaultValueText: String? {
        guard case .value(let value) = initial else { return nil }
        return format.text(value)
    }

    var missing: String? {
        guard case .required(let problem) = initial else { return nil }
        return problem
    }

    func apply(_ input: SettingInput, to root: inout Root) throws(SettingProblem) {
        if let requirement, !requirement.holds(root) { throw requirement.problem }
        let value = try value(input)
        if let problem = check?(value, root) { throw problem }
        write(&root, value)
    }
}

/// How the command line gives a setting.
public enum CommandLineSpelling: Sendable, Equatable {
    /// `--NAME VALUE`.
    case option(String)
    /// As part of another argument, such as `--listen NAME=ADDRESS`, which
    /// ``CommandLineConfiguration`` reads itself.
    case within(String)
    /// Only a file gives it.
    case none
}

/// The value a setting has when it is not given.
enum SettingDefault<Value: Sendable>: Sendable {
    case value(Value)
    /// The model works it out (or leaves it to the system); this says what it is.
    case described(String)
    /// There is none: a configuration without the setting is an error with this problem.
    case required(String)
}

/// A condition on the rest of a table for a setting to be given at all.
struct SettingRequirement<Root>: Sendable {
    let holds: @Sendable (Root) -> Bool
    let problem: SettingProblem
}

/// A setting's value as its source gives it.
enum SettingInput {
    /// A string in the file (or its integer, written out), or an option's value.
    case text(String)
    case strings([String])
    case table([String: String])

    /// An empty array: given, but giving nothing.
    var isEmpty: Bool {
        if case .strings(let strings) = self { strings.isEmpty } else { false }
    }

    /// What the file writes for a setting.
    enum Kind: Sendable {
        case string, integer, boolean, strings, table
        /// A table whose values are integers or strings, all read as text.
        case integerTable
    }
}

/// Where a value came from, which decides how a problem writes values and settings.
enum SettingSyntax: Sendable {
    case file, commandLine

    /// `value` as this source writes it: quoted in a file, bare on a command line.
    func literal(_ value: String) -> String {
        switch self {
        case .file: value.quoted
        case .commandLine: value
        }
    }

    /// `setting` given `value`: `protocol = "preload"`, or `--protocol preload`.
    func assignment<Root, Value>(_ setting: Setting<Root, Value>, _ value: String) -> String {
        switch self {
        case .file: "\(setting.key) = \(value.quoted)"
        case .commandLine: "--\(setting.option) \(value)"
        }
    }
}

/// What is wrong with a value, written the way its source writes values.
struct SettingProblem: Error, Sendable {
    let message: @Sendable (SettingSyntax) -> String

    init(_ message: @escaping @Sendable (SettingSyntax) -> String) {
        self.message = message
    }

    init(_ text: String) {
        message = { _ in text }
    }
}
