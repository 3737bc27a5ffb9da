/// The key someone most likely meant when they wrote one Baton does not know: the nearest by
/// edit distance, where swapping two neighbouring letters is one edit (`cuont` is one from
/// `count`), and only if it is near enough to be a typo rather than another word.
enum KeySuggestion {
    static func nearest(to written: String, among keys: [String]) -> String? {
        let allowed = written.count < 4 ? 1 : written.count < 9 ? 2 : 3
        // The lengths alone rule most keys out, and keep a key of megabytes from costing a
        // table of its length times each key's.
        let ranked = keys.filter { abs($0.count - written.count) <= allowed }
            .map { (key: $0, distance: distance(Array(written), Array($0))) }
            .filter { $0.distance <= allowed }
            .sorted { ($0.distance, $0.key) < ($1.distance, $1.key) }
        return ranked.first?.key
    }

    /// The optimal-string-alignment distance: insertions, deletions, substitutions and
    /// transpositions of neighbours, each one edit.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}
