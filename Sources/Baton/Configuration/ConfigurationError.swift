/// A configuration that cannot be used, and exactly where and why.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    /// The file, or "command line".
    var source: String
    /// The key, such as `workers.count` or `listener[1].address`.
    var key: String?
    var value: String?
    var problem: String

    init(source: String, key: String? = nil, value: String? = nil, problem: String) {
        self.source = source
        self.key = key
        self.value = value
        self.problem = problem
    }

    public var description: String {
        var text = source
        if let key {
            text += ": \(key)"
            if let value {
                text += " = \(value)"
            }
        }
        return text + ": " + problem
    }
}

extension String {
    /// As TOML writes a string, for error messages.
    var quoted: String { "\"\(self)\"" }
}
