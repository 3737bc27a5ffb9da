/// How a reload replaces the serving generation's workers (Docs/rollouts.md).
public enum ReloadStrategy: String, Sendable, Equatable, CaseIterable, Codable {
    /// Every slot's new worker starts at once; the new generation takes over when all are
    /// ready. For a moment every worker runs twice.
    case allAtOnce = "all-at-once"
    /// `batch` slots at a time: their new workers start, take over those slots once
    /// ready, and the old workers of those slots drain before the next batch starts. At
    /// most `count + batch` workers are alive.
    case rolling
}
