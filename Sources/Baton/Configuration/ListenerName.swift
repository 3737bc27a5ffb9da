/// Listener names travel in `LISTEN_FDNAMES`, which separates them with colons.
public enum ListenerName {
    static let rule = "a name is 1 to 255 letters, digits, '-', '_' or '.'"

    static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255
            && name.unicodeScalars.allSatisfy { $0.properties.isAlphabetic && $0.isASCII || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }
    }
}
