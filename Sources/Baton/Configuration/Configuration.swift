/// Everything Baton needs to run one service: its listeners and its workers.
///
/// A configuration comes from the command line (``CommandLineConfiguration``) or a TOML
/// file (``ConfigurationFile``); either way it is validated as a whole before anything
/// uses it, so a bad one changes nothing.
public struct Configuration: Sendable, Equatable, Codable {
    var listeners: [ListenerConfiguration]
    var workers: WorkerConfiguration
    /// Path of the control socket `batonctl` talks to.
    var controlSocket: String
    /// Where Baton serves `/metrics`; nil for nowhere.
    var metrics: ListenerAddress?
    /// How long the workers serve on, with `/ready` at 503, once a stop was asked; nil: none.
    var stopDelay: Duration?
    /// Whose members may reload, scale, promote or roll back a canary, and see the status through the control socket.
    var controlGroup: SystemGroup?
    /// Whose members may see the status through the control socket.
    var controlReadOnlyGroup: SystemGroup?

    init(
        listeners: [ListenerConfiguration], workers: WorkerConfiguration, controlSocket: String,
        metrics: ListenerAddress? = nil
    ) {
        self.listeners = listeners
        self.workers = workers
        self.controlSocket = controlSocket
        self.metrics = metrics
    }

    /// What it runs, in a line: its listeners and workers.
    public var summary: String {
        let names = listeners.map { "\($0.name) \($0.address)" }.joined(separator: ", ")
        return "\(listeners.count) listener\(listeners.count == 1 ? "" : "s")\(names.isEmpty ? "" : " (\(names))"), "
            + "\(workers.count) worker\(workers.count == 1 ? "" : "s") of \(workers.command.joined(separator: " "))"
    }

    /// Checks what single values cannot: the whole must make sense.
    func validate(source: String) throws(ConfigurationError) {
        var names = Set<String>()
        var addresses = Set<ListenerAddress>()
        for listener in listeners {
            guard names.insert(listener.name).inserted else {
                throw ConfigurationError(
                    source: source, key: "listener.name", value: listener.name.quoted,
                    problem: "two listeners have this name")
            }
            guard addresses.insert(listener.address).inserted else {
                throw ConfigurationError(
                    source: source, key: "listener.address", value: "\(listener.address)".quoted,
                    problem: "two listeners have this address")
            }
        }
        if let metrics, addresses.contains(metrics) {
            throw ConfigurationError(
                source: source, key: "metrics", value: "\(metrics)".quoted,
                problem: "a listener has this address")
        }
        if workers.command.isEmpty {
            throw ConfigurationError(
                source: source, key: "workers.command", value: "[]",
                problem: "a command to run is required")
        }
        for argument in workers.command {
            for name in DescriptorPlaceholder.names(in: argument) where !names.contains(name) {
                let known = listeners.map { $0.name.quoted }.joined(separator: ", ")
                throw ConfigurationError(
                    source: source, key: "workers.command", value: argument.quoted,
                    problem: "{fd:\(name)} names no listener; listeners: \(known.isEmpty ? "none" : known)")
            }
        }
        if workers.restartDelayMax < workers.restartDelay {
            throw ConfigurationError(
                source: source, key: "workers.restart_delay_max",
                value: "\(workers.restartDelayMax)",
                problem: "must not be shorter than restart_delay (\(workers.restartDelay))")
        }
        try DescriptorBudget(self).reserve(source: source, listeners: listeners.count)
    }
}
