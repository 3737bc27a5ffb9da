/// What happens to the workers' standard output and error.
public enum OutputMode: String, Sendable, Equatable, CaseIterable, Codable {
    /// Workers write to Baton's own stdout and stderr.
    case inherit
    /// Each line is prefixed with `[g<generation>/s<slot>] `.
    case prefix
}
