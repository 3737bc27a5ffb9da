/// A command written as one string (`command = "/usr/bin/server --port 8080"`), split into
/// the program and its arguments as systemd splits `ExecStart=`: at unquoted whitespace;
/// `"…"` and `'…'` keep whitespace in a word and are removed; C escapes (`\n`, `\t`, `\\`,
/// `\"`, `\'`, `\s` for a space, `\xHH`, `\NNN` octal, `\uXXXX`, `\UXXXXXXXX`) and a
/// backslash before whitespace work inside and outside quotes. There is no shell: no
/// variables, globs, pipes or redirections. A program whose name needs none of this but
/// holds a space is written with the array form, `["/opt/my server/run"]`.
enum CommandWords {
    static func split(_ text: String) throws(SettingProblem) -> [String] {
        var words: [String] = []
        var word: String.UnicodeScalarView?
        var quote: Unicode.Scalar?
        // Scalars, not characters: "\r\n" is one Character, and two separators.
        var rest = Array(text.unicodeScalars)[...]
        while let scalar = rest.popFirst() {
            if scalar == "\\" {
                guard let escaped = rest.popFirst() else {
                    throw SettingProblem("ends with a backslash, which escapes nothing")
                }
                word = (word ?? .init()) + [try unescape(escaped, rest: &rest)]
            } else if let open = quote {
                if scalar == open { quote = nil } else { word = (word ?? .init()) + [scalar] }
            } else if scalar == "\"" || scalar == "'" {
                quote = scalar
                word = word ?? .init()
            } else if " \t\n\r".unicodeScalars.contains(scalar) {
                if let finished = word { words.append(String(finished)) }
                word = nil
            } else {
                word = (word ?? .init()) + [scalar]
            }
        }
        if let quote {
            throw SettingProblem("has a \(quote) that is never closed")
        }
        if let word { words.append(String(word)) }
        return words
    }

    /// What a backslash and `escaped` (and the digits after it, for `\x`, `\u`, `\U` and
    /// octal) stand for.
    private static func unescape(_ escaped: Unicode.Scalar, rest: inout ArraySlice<Unicode.Scalar>) throws(SettingProblem) -> Unicode.Scalar {
        switch escaped {
        case "a": return "\u{07}"
        case "b": return "\u{08}"
        case "f": return "\u{0C}"
        case "n": return "\n"
        case "r": return "\r"
        case "t": return "\t"
        case "v": return "\u{0B}"
        case "s": return " "
        case "\\", "\"", "'", " ", "\t", "\n": return escaped
        case "x": return try code(digits: 2, radix: 16, of: "\\x", from: &rest)
        case "u": return try code(digits: 4, radix: 16, of: "\\u", from: &rest)
        case "U": return try code(digits: 8, radix: 16, of: "\\U", from: &rest)
        case "0"..."7":
            rest.insert(escaped, at: rest.startIndex)
            return try code(digits: 3, radix: 8, of: "\\\(escaped)", from: &rest)
        default:
            throw SettingProblem("has \\\(escaped), which is no escape (write \\\\ for a backslash)")
        }
    }

    /// The scalar whose code is the next `digits` digits.
    private static func code(
        digits: Int, radix: Int, of escape: String, from rest: inout ArraySlice<Unicode.Scalar>
    ) throws(SettingProblem) -> Unicode.Scalar {
        let text = String(String.UnicodeScalarView(rest.prefix(digits)))
        guard text.unicodeScalars.count == digits, let value = UInt32(text, radix: radix), value != 0, let scalar = Unicode.Scalar(value) else {
            throw SettingProblem("has \(escape) without the \(radix == 16 ? "hexadecimal" : "octal") digits of a character other than NUL")
        }
        rest = rest.dropFirst(digits)
        return scalar
    }
}
