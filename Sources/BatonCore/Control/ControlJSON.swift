#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One JSON object per line, keys sorted, as both sides of the control protocol write it.
enum ControlJSON {
    static func line<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        // Unescaped slashes: `g3/s1` reads as it is meant in a raw answer.
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding our own plain structs cannot fail.
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
