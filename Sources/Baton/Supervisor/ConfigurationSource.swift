import CBatonShim
import NIOCore
import NIOPosix

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

    /// Loads the configuration and hands it to `loaded` on `eventLoop`, later, never
    /// inside this call. A file is read on a thread of NIO's pool, never on `eventLoop`:
    /// reading it (a slow disk, a FIFO) and trying it in a forked parser take as long as
    /// they take, while status, /metrics and worker exits must still be handled; what a
    /// refused configuration used is given back to the system. A configuration given on
    /// the command line has nothing to read, and comes back without waking the pool.
    func load(on eventLoop: EventLoop, _ loaded: @escaping @Sendable (Result<Configuration, ConfigurationError>) -> Void) {
        if case .fixed(let configuration) = self {
            eventLoop.execute { loaded(.success(configuration)) }
            return
        }
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { () -> Result<Configuration, ConfigurationError> in
            let result = Result { () throws(ConfigurationError) in try load() }
            if case .failure = result { baton_release_free_memory() }
            return result
        }.whenComplete { result in
            switch result {
            case .success(let result): loaded(result)
            case .failure(let error): loaded(.failure(ConfigurationError(source: name, problem: "not read: \(error)")))
            }
        }
    }

    public var name: String {
        switch self {
        case .fixed: "command line"
        case .file(let path, _): path
        }
    }
}
