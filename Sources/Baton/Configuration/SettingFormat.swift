/// How the values of one kind of setting are written, read and checked: the one parser
/// the file and the command line share.
struct SettingFormat<Value: Sendable>: Sendable {
    /// What the file writes for it.
    let written: SettingInput.Kind
    /// The kind and the values accepted, for the documentation: "duration, 0s or more".
    let description: String
    /// The value an input gives; throws ``problem`` or a more precise one.
    let parse: @Sendable (SettingInput) throws(SettingProblem) -> Value
    /// Whether a value that parses is in the setting's range.
    let accepts: @Sendable (Value) -> Bool
    /// What is wrong with a value that does not parse.
    let problem: SettingProblem
    /// What is wrong with a value that parses but is out of range.
    let outOfRange: SettingProblem
    /// A value as people write it, for the documentation and the help.
    let text: @Sendable (Value) -> String

    /// A format read from text, with the default checks of the rest.
    init(
        _ description: String, written: SettingInput.Kind = .string, problem: SettingProblem,
        accepts: @escaping @Sendable (Value) -> Bool = { _ in true }, outOfRange: SettingProblem? = nil,
        text: @escaping @Sendable (Value) -> String,
        parse: @escaping @Sendable (String) throws(SettingProblem) -> Value?
    ) {
        self.written = written
        self.description = description
        self.problem = problem
        self.outOfRange = outOfRange ?? problem
        self.accepts = accepts
        self.text = text
        self.parse = { input throws(SettingProblem) in
            guard case .text(let string) = input else { preconditionFailure("\(description) is read from text") }
            guard let value = try parse(string) else { throw problem }
            return value
        }
    }

    /// A format read from an array or a table.
    init(
        _ description: String, written: SettingInput.Kind, problem: SettingProblem,
        text: @escaping @Sendable (Value) -> String,
        read: @escaping @Sendable (SettingInput) throws(SettingProblem) -> Value
    ) {
        self.written = written
        self.description = description
        self.problem = problem
        outOfRange = problem
        accepts = { _ in true }
        self.text = text
        parse = read
    }
}

extension SettingFormat where Value == String {
    /// Any string, such as a path.
    static func string(_ description: String) -> Self {
        Self(description, problem: SettingProblem("expected a string"), text: { $0 }) { $0 }
    }
}

extension SettingFormat where Value == [String] {
    /// A program and its arguments: an array of strings, taken as they are, or one string,
    /// split into words as systemd splits `ExecStart=` (``CommandWords``).
    static var command: Self {
        Self(
            "array of strings, or a string split as systemd splits ExecStart=", written: .strings,
            problem: SettingProblem("expected an array of strings or a string"),
            text: { "[" + $0.map(\.quoted).joined(separator: ", ") + "]" }
        ) { input throws(SettingProblem) in
            switch input {
            case .strings(let strings):
                return strings
            case .text(let text):
                let words = try CommandWords.split(text)
                guard !words.isEmpty else {
                    throw SettingProblem(#"names no program: write the program and its arguments, such as "./server --flag""#)
                }
                return words
            case .table:
                preconditionFailure("a command is read from strings or text")
            }
        }
    }
}

extension SettingFormat where Value == [String: String] {
    /// Names and values, such as environment variables.
    static var table: Self {
        Self(
            "table of strings", written: .table, problem: SettingProblem("expected a table of strings"),
            text: { $0.isEmpty ? "{}" : "{ " + $0.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value.quoted)" }.joined(separator: ", ") + " }" }
        ) {
            input throws(SettingProblem) in
            guard case .table(let table) = input else { preconditionFailure("a table is read from a table") }
            return table
        }
    }
}

extension SettingFormat where Value == Duration {
    /// `30s`, `500ms`, `2m`, `1.5s`, `1h`, within `range`.
    static func duration(in range: ClosedRange<Duration>) -> Self {
        let bounds = "\(DurationFormat.string(range.lowerBound)) to \(DurationFormat.string(range.upperBound))"
        let problem = SettingProblem { "expected a duration such as \($0.literal("30s")), \($0.literal("500ms")) or \($0.literal("2m"))" }
        let outOfRange = SettingProblem("out of range: expected a duration from \(bounds)")
        return Self(
            "duration, \(bounds)", problem: problem, accepts: range.contains, outOfRange: outOfRange,
            text: DurationFormat.string
        ) { text throws(SettingProblem) in
            if let duration = DurationFormat.parse(text) { return duration }
            if DurationFormat.writesDuration(text) { throw outOfRange }
            return nil
        }
    }
}

extension SettingFormat where Value: FixedWidthInteger {
    /// An integer in `range`, written as an integer in the file; `problem` says what
    /// is expected of it.
    static func integer(in range: ClosedRange<Value>, problem: @escaping @Sendable (ClosedRange<Value>) -> String) -> Self {
        Self(
            "integer, \(range.lowerBound) to \(range.upperBound)", written: .integer, problem: SettingProblem(problem(range)),
            accepts: range.contains, text: { "\($0)" }
        ) { Value($0) }
    }
}

extension SettingFormat where Value == Int32 {
    /// A signal by name, with or without `SIG`, or by number, that can tell a worker to
    /// drain: not one that stops, continues or reports a child.
    static var drainSignal: Self {
        let refused = SignalName.refusedForDrain.map { String(SignalName.name($0).trimmingPrefix("SIG")) }
        return Self(
            "signal name or number, except \(refused.joined(separator: ", "))",
            problem: SettingProblem("unknown signal: use a name such as TERM, QUIT or WINCH"),
            accepts: { !SignalName.refusedForDrain.contains($0) },
            outOfRange: SettingProblem(
                "this signal cannot tell a worker to drain (it stops or continues a process, or reports a child): use TERM, QUIT, INT, USR1, USR2, WINCH or HUP"
            ),
            text: { String(SignalName.name($0).trimmingPrefix("SIG")) }
        ) { SignalName.parse($0) }
    }
}

extension SettingFormat where Value == UInt32 {
    /// A file mode in octal, such as `0660`.
    static var fileMode: Self {
        Self(
            "octal file mode", problem: SettingProblem { "expected an octal file mode such as \($0.literal("0660"))" },
            accepts: { $0 <= 0o777 }, text: { "0" + String($0, radix: 8) }
        ) { UInt32($0, radix: 8) }
    }
}

extension SettingFormat where Value: RawRepresentable & CaseIterable & Sendable, Value.RawValue == String {
    /// One of the enumeration's raw values.
    static func choice(problem: @escaping @Sendable (SettingSyntax) -> String) -> Self {
        let choices = Value.allCases.map { "`\($0.rawValue)`" }.joined(separator: ", ")
        return Self("one of \(choices)", problem: SettingProblem(problem), text: \.rawValue) { Value(rawValue: $0) }
    }
}

extension SettingFormat where Value == Readiness {
    /// `notify`, `delay:DURATION` or `exec:COMMAND`.
    static var readiness: Self {
        parsing("`notify`, `delay:DURATION` or `exec:COMMAND`", Readiness.init(parsing:))
    }
}

extension SettingFormat where Value == CanaryCheck {
    /// `exec:COMMAND`.
    static var canaryCheck: Self {
        parsing("`exec:COMMAND`", CanaryCheck.init(parsing:))
    }
}

extension SettingFormat where Value == ListenerAddress {
    /// `tcp://HOST:PORT`, `tcp://[IPv6]:PORT`, `udp://HOST:PORT` or `unix:///PATH`.
    static var address: Self {
        parsing("`tcp://HOST:PORT`, `tcp://[IPv6]:PORT`, `udp://HOST:PORT` or `unix:///PATH`", ListenerAddress.init(parsing:))
    }
}

extension SettingFormat where Value == ListenerAddress {
    /// A TCP address for an HTTP endpoint.
    static var tcpAddress: Self {
        let problem = SettingProblem { "expected \($0.literal("tcp://HOST:PORT")), such as \($0.literal("tcp://127.0.0.1:9102"))" }
        return Self(
            "`tcp://HOST:PORT` or `tcp://[IPv6]:PORT`", problem: problem,
            accepts: { if case .tcp = $0 { true } else { false } }, text: \.description
        ) { text throws(SettingProblem) in
            do throws(FormatError) {
                return try ListenerAddress(parsing: text)
            } catch {
                throw SettingProblem(error.description)
            }
        }
    }
}

extension SettingFormat {
    /// Values read by `initializer`, whose error says what is wrong.
    private static func parsing(
        _ description: String,
        _ initializer: @escaping @Sendable (String) throws(FormatError) -> Value
    ) -> Self
    where Value: CustomStringConvertible {
        Self(description, problem: SettingProblem("expected \(description)"), text: \.description) { text throws(SettingProblem) in
            do throws(FormatError) {
                return try initializer(text)
            } catch {
                throw SettingProblem(error.description)
            }
        }
    }
}

extension SettingFormat where Value == String {
    /// A listener's name, as `LISTEN_FDNAMES` can carry it.
    static var listenerName: Self {
        Self(
            "1 to 255 letters, digits, `-`, `_` or `.`", problem: SettingProblem(ListenerName.rule),
            accepts: ListenerName.isValid, text: { $0 }
        ) { $0 }
    }
}

extension SettingFormat where Value == WorkerUser {
    /// A user name (or uid) from the user database, that this Baton may run workers as.
    static var user: Self {
        let problem = SettingProblem("no such user (looked up with getpwnam): create the user, or name an existing one")
        return Self("user name or uid", problem: problem, text: \.name) { text throws(SettingProblem) in
            guard let user = WorkerUser.lookUp(text) else { return nil }
            if let refusal = CredentialPrivilege.problem(uid: user.uid, gid: user.gid) { throw SettingProblem(refusal) }
            return user
        }
    }
}

extension SettingFormat where Value == SystemGroup {
    /// A group name (or gid) from the group database, that this Baton may run workers as.
    static var group: Self {
        let problem = SettingProblem("no such group (looked up with getgrnam): create the group, or name an existing one")
        return Self("group name or gid", problem: problem, text: \.name) { text throws(SettingProblem) in
            guard let group = SystemGroup.lookUp(text) else { return nil }
            if let refusal = CredentialPrivilege.problem(uid: nil, gid: group.gid) { throw SettingProblem(refusal) }
            return group
        }
    }
}

extension SettingFormat where Value == SystemGroup {
    /// A group whose members may use the control socket: any but root's, whose gid 0
    /// cannot be told apart from no group in the peer's list (SO_PEERGROUPS).
    static var controlGroup: Self {
        let problem = SettingProblem("no such group (looked up with getgrnam): create the group, or name an existing one")
        return Self("group name or gid", problem: problem, text: \.name) { text throws(SettingProblem) in
            guard let group = SystemGroup.lookUp(text) else { return nil }
            guard group.gid != 0 else { throw SettingProblem("root's group cannot be a control group: name a group of its own, such as \"deploy\"") }
            return group
        }
    }
}

extension SettingFormat where Value == Bool {
    /// `true` or `false`.
    static var boolean: Self {
        Self(
            "`true` or `false`", written: .boolean, problem: SettingProblem("expected true or false"),
            text: { $0 ? "true" : "false" }
        ) { ["true": true, "false": false][$0] }
    }
}

extension SettingFormat where Value == [ResourceLimit: UInt64] {
    /// Resource limits by name, each a number or `"infinity"`.
    static var limits: Self {
        let names = ResourceLimit.allCases.map(\.rawValue).joined(separator: ", ")
        return Self(
            "table of limits: \(names); each a number or `\"infinity\"`", written: .integerTable,
            problem: SettingProblem("expected a table of limits, such as { nofile = 65536, core = 0 }"),
            text: { limits in
                limits.isEmpty
                    ? "{}"
                    : "{ "
                        + limits.sorted { $0.key.rawValue < $1.key.rawValue }
                        .map { "\($0.key.rawValue) = \($0.value == ResourceLimit.unlimited ? "\"infinity\"" : "\($0.value)")" }
                        .joined(separator: ", ") + " }"
            }
        ) { input throws(SettingProblem) in
            guard case .table(let table) = input else { preconditionFailure("limits are read from a table") }
            var limits: [ResourceLimit: UInt64] = [:]
            for (name, text) in table.sorted(by: { $0.key < $1.key }) {
                guard let limit = ResourceLimit(rawValue: name) else {
                    throw SettingProblem("unknown limit \(name.quoted); known limits: \(names)")
                }
                guard let value = text == "infinity" || text == "unlimited" ? ResourceLimit.unlimited : UInt64(text) else {
                    throw SettingProblem("\(name) = \(text): expected a number of 0 or more, or \"infinity\"")
                }
                limits[limit] = value
            }
            return limits
        }
    }
}
