/// What one reload was asked for beyond the configuration file (`batonctl reload
/// --strategy --batch --canary`, `batonctl scale`). They ride with the reload's events, from its request
/// to its loaded configuration, and hold for that reload only; requests that wait and
/// collapse into one reload pool theirs, the later one's winning.
struct ReloadOptions: Sendable, Equatable {
    /// The strategy instead of the configuration's.
    var strategy: ReloadStrategy?
    /// With `strategy`: how many slots at a time instead of the configuration's `batch`.
    var batch: Int?
    /// The reload starts as a canary of these workers.
    var canary: Canary?
    /// `batonctl scale`: this many workers, for this reload and (once its configuration
    /// is loaded) every later one. A request the machine refuses never gets that far, so
    /// it changes nothing.
    var workers: Int?

    /// The reload as the configuration file says.
    static let configured = ReloadOptions()

    init(strategy: ReloadStrategy? = nil, batch: Int? = nil, canary: Canary? = nil, workers: Int? = nil) {
        self.strategy = strategy
        self.batch = batch
        self.canary = canary
        self.workers = workers
    }

    /// These options, with what a later request asked for in their place: its strategy
    /// comes with its batch, as it was asked.
    func merging(_ later: ReloadOptions) -> ReloadOptions {
        var merged = self
        if later.strategy != nil {
            merged.strategy = later.strategy
            merged.batch = later.batch
        }
        if let canary = later.canary { merged.canary = canary }
        if let workers = later.workers { merged.workers = workers }
        return merged
    }

    /// The configuration this reload starts: the file's, with the asked strategy, batch
    /// and number of workers.
    func applied(to configuration: Configuration) -> Configuration {
        var configuration = configuration
        if let workers { configuration.workers.count = workers }
        guard let strategy else { return configuration }
        configuration.workers.strategy = strategy
        if let batch { configuration.workers.batch = batch }
        return configuration
    }
}
