/// What a worker is told about its sockets: the environment its protocol defines and
/// its command with `{fd:NAME}` filled in. The sockets themselves are placed at fd 3,
/// 4, … in listener order by the spawner. Pure, so that every protocol's format is
/// tested exactly as its own documentation writes it.
struct SocketHandoff: Equatable {
    var environment: [String: String] = [:]
    var command: [String]
    /// The variable the spawner fills in with the worker's own pid: `LISTEN_PID`, or
    /// `BATON_PRELOAD_PID` for the preload library.
    var processIDVariable: String?

    /// - Parameters:
    ///   - listeners: the slot's listeners in fd order.
    ///   - supervisorPID: Baton's pid, the parent of every worker.
    ///   - preloadLibrary: the path of `libbaton-preload.so`, for `.preload`.
    ///   - inheritedPreload: the `LD_PRELOAD` the worker would otherwise get.
    ///   - drainSignal: for `.preload`, the signal the library holds back for its grace.
    init(
        _ socketProtocol: SocketProtocol, command: [String], listeners: [ListenerConfiguration],
        generation: Int, slot: Int, supervisorPID: Int32, preloadLibrary: String, inheritedPreload: String? = nil,
        drainSignal: Int32 = SignalName.terminate
    ) {
        let descriptors = listeners.indices.map { WorkerContract.firstListenerDescriptor + Int32($0) }
        var numbers: [String: String] = [:]
        for (listener, descriptor) in zip(listeners, descriptors) {
            numbers[listener.name] = "\(descriptor)"
        }
        self.command = command.map { argument in
            DescriptorPlaceholder.substitute(argument) { numbers[$0] ?? "{fd:\($0)}" }
        }
        switch socketProtocol {
        case .systemd:
            guard !listeners.isEmpty else { break }
            environment[WorkerContract.Systemd.descriptorCount] = "\(listeners.count)"
            environment[WorkerContract.Systemd.descriptorNames] = listeners.map(\.name).joined(separator: ":")
            processIDVariable = WorkerContract.Systemd.processID
        case .einhorn:
            // einhorn's workers check EINHORN_MASTER_PID against their parent's pid
            // before they trust the descriptors; Baton is that parent.
            environment[WorkerContract.Einhorn.masterProcessID] = "\(supervisorPID)"
            environment[WorkerContract.Einhorn.descriptorCount] = "\(listeners.count)"
            for (index, descriptor) in descriptors.enumerated() {
                environment[WorkerContract.Einhorn.descriptor(index)] = "\(descriptor)"
            }
            environment[WorkerContract.Einhorn.childIndex] = "\(slot)"
        case .serverStarter:
            environment[WorkerContract.ServerStarter.port] = zip(listeners, descriptors)
                .map { Self.serverStarterEntry($0.address, descriptor: $1) }
                .joined(separator: ";")
            environment[WorkerContract.ServerStarter.generation] = "\(generation)"
        case .preload:
            environment["LD_PRELOAD"] = [preloadLibrary, inheritedPreload].compactMap { $0 }
                .filter { !$0.isEmpty }.joined(separator: " ")
            environment[WorkerContract.Preload.descriptorCount] = "\(listeners.count)"
            environment[WorkerContract.Preload.drainSignal] = "\(drainSignal)"
            processIDVariable = WorkerContract.Preload.processID
        case .none:
            break
        }
    }

    /// One `key=fd` entry of `SERVER_STARTER_PORT`, written as Server::Starter's
    /// `start_server` writes it: `host:port` for IPv4, `[host]:port` for IPv6, the
    /// path for a unix socket. UDP is written like TCP: the `u` prefix exists only on
    /// `start_server`'s `--port` option, and a worker tells them apart by `SO_TYPE`.
    static func serverStarterEntry(_ address: ListenerAddress, descriptor: Int32) -> String {
        switch address {
        case .tcp(let host, let port), .udp(let host, let port):
            "\(IPAddress.bracketed(host)):\(port)=\(descriptor)"
        case .unix(let path):
            "\(path)=\(descriptor)"
        }
    }
}
