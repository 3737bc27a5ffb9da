/// Durations as people write them in configurations: `30s`, `500ms`, `2m`, `1.5s`, `1h`.
public enum DurationFormat {
    /// The longest duration a timer takes: its nanoseconds must fit in an `Int64`
    /// (about 292 years).
    static let longestMicroseconds = Int64.max / 1000

    /// The duration `text` writes, or nil when it writes none or one longer than a timer takes.
    static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let number = Double(text.dropLast(suffix.count)), number >= 0, number.isFinite,
                let microseconds = Int64(exactly: (number * scale * 1e6).rounded()),
                microseconds <= longestMicroseconds
            else { return nil }
            return .microseconds(microseconds)
        }
        return nil
    }

    /// Whether `text` writes a duration, however long: `1e300s` does, `soon` does not.
    static func writesDuration(_ text: String) -> Bool {
        for suffix in ["ms", "us", "s", "m", "h"] where text.hasSuffix(suffix) {
            if let number = Double(text.dropLast(suffix.count)), number >= 0 { return true }
            return false
        }
        return false
    }

    /// The shortest exact form, as `parse` reads it back.
    static func string(_ duration: Duration) -> String {
        let microseconds = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        if microseconds > 0 && microseconds % 3_600_000_000 == 0 { return "\(microseconds / 3_600_000_000)h" }
        if microseconds % 1_000_000 == 0 { return "\(microseconds / 1_000_000)s" }
        if microseconds % 1000 == 0 { return "\(microseconds / 1000)ms" }
        return "\(microseconds)us"
    }
}
