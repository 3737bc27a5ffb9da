/// Where the configuration comes from, at start and at every reload.
public enum ConfigurationSource: Sendable {
    /// Given once, on the command line: a reload starts the same command afresh
    /// (which picks up a new binary or new files on disk).
    case fixed(Configuration)
    /// Re-read from the file at every reload.
    case file(path: String, defaultControlSocket: String)

    public func load() throws(ConfigurationError) -> Configuration {
        switch self {
        case .fixed(let configuration):
            return configuration
        case .file(let path, let defaultControlSocket):
            return try ConfigurationFile.load(path: path, defaultControlSocket: defaultControlSocket)
        }
    }

    public var name: String {
        switch self {
        case .fixed: "command line"
        case .file(let path, _): path
        }
    }
}
