/// `{fd:NAME}` in a worker's arguments: the descriptor number of listener NAME.
public enum DescriptorPlaceholder {
    /// The listener names that `argument` refers to, in order.
    static func names(in argument: String) -> [String] {
        var names: [String] = []
        _ = substitute(argument) { name in
            names.append(name)
            return ""
        }
        return names
    }

    /// `argument` with every `{fd:NAME}` replaced by `number(NAME)`.
    static func substitute(_ argument: String, _ number: (String) -> String) -> String {
        var result = ""
        var rest = Substring(argument)
        while let open = rest.firstRange(of: "{fd:") {
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else { break }
            result += rest[..<open.lowerBound]
            result += number(String(rest[open.upperBound..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }
}
