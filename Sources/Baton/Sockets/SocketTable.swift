import CBatonShim
import Glibc
import Logging

/// Every listening socket Baton holds, by listener, slot and generation, and the
/// steering of each `per-worker` listener's reuseport group.
///
/// A steered listener (`per-worker` TCP or UDP, with a steering program loaded) gives
/// each generation sockets of its own in the group; its steering map (the rotation)
/// decides which of them take new connections, and a socket leaves only after it has
/// left the rotation, so what it still holds migrates to a socket in rotation. Other
/// listeners keep one socket per slot (or one in all) that every generation shares.
/// Sockets are opened when a configuration first needs them and closed only when no
/// alive generation uses them any more.
final class SocketTable {
    /// One socket: for a `shared` listener `slot` is nil.
    struct Key: Hashable {
        var name: String
        var address: ListenerAddress
        var reusePort: ReusePortMode
        var slot: Int?
        /// The generation whose own socket this is; nil for a socket that generations
        /// share, or one opened for a steered listener that no generation took yet.
        var generation: Int?

        init(name: String, address: ListenerAddress, reusePort: ReusePortMode, slot: Int?, generation: Int? = nil) {
            self.name = name
            self.address = address
            self.reusePort = reusePort
            self.slot = slot
            self.generation = generation
        }

        init(_ listener: ListenerConfiguration, slot: Int, generation: Int? = nil) {
            name = listener.name
            address = listener.address
            reusePort = listener.reusePort
            self.slot = listener.reusePort == .perWorker ? slot : nil
            self.generation = generation
        }

        /// The same socket position, of another generation.
        func of(generation: Int?) -> Key {
            var key = self
            key.generation = generation
            return key
        }
    }

    var descriptors: [Key: Int32] = [:]
    private let logger: Logger
    private let systemd: SystemdNotifier
    private let maximumBacklog = ListenerSocket.systemMaximumBacklog()
    /// The steering of every steered listener's group, and with it the rotation.
    let steering: SteeringTable
    /// What systemd passed at start, until the first configuration has adopted it.
    private var inherited: InheritedSockets?
    /// Listeners configured `per-worker` whose socket from systemd every slot must share.
    var sharedInstead = Set<ListenerAddress>()
    /// Sockets that came from systemd.
    var adopted = Set<Key>()

    init(logger: Logger, systemd: SystemdNotifier, inherited: InheritedSockets) {
        self.logger = logger
        self.systemd = systemd
        self.inherited = inherited
        steering = SteeringTable(logger: logger)
    }

    /// Opens (or adopts from systemd) what `configuration` needs and does not have yet,
    /// and returns the configuration as it will run: a `per-worker` listener whose
    /// socket from systemd cannot have siblings runs `shared`. On failure, closes what
    /// this call opened and leaves everything else as it was.
    func prepare(_ configuration: Configuration) throws -> Configuration {
        var configuration = configuration
        var opened: [Key] = []
        do {
            for index in configuration.listeners.indices {
                if sharedInstead.contains(configuration.listeners[index].address) {
                    configuration.listeners[index].reusePort = .shared
                }
                let listener = configuration.listeners[index]
                let backlog = min(listener.backlog ?? maximumBacklog, maximumBacklog)
                for slot in 0..<configuration.workers.count {
                    let key = Key(listener, slot: slot)
                    let existing = descriptors.keys.filter { $0.of(generation: nil) == key }
                    if !existing.isEmpty {
                        // A socket unit's Backlog= stands unless the configuration sets one.
                        for key in existing where listener.address.isStream && (listener.backlog != nil || !adopted.contains(key)) {
                            if let fd = descriptors[key] { try? ListenerSocket.setBacklog(fd, backlog) }
                        }
                        continue
                    }
                    if let socket = try inherited?.adopt(for: listener) {
                        logger.info("listener \(listener.name) \(listener.address) adopted fd \(socket.fd) from systemd")
                        descriptors[key] = socket.fd
                        adopted.insert(key)
                        opened.append(key)
                        if socket.identity.reusePort { steering.join(socket.fd, listener) }
                        if listener.address.isStream, listener.backlog != nil { try? ListenerSocket.setBacklog(socket.fd, backlog) }
                        if listener.reusePort == .perWorker, !socket.identity.reusePort {
                            opened.append(
                                try share(
                                    listener, adopted: key, reason: "it has no SO_REUSEPORT",
                                    remedy: "add ReusePort=yes to the socket unit"))
                            configuration.listeners[index].reusePort = .shared
                            break
                        }
                        continue
                    }
                    let fd: Int32
                    do {
                        fd = try ListenerSocket.open(listener, backlog: backlog)
                    } catch {
                        // A sibling of a socket unit's socket made for another user (or
                        // root): the kernel keeps reuseport groups to one user. At start
                        // the listener can still become shared; later it is an error.
                        guard error.errno == EADDRINUSE, listener.reusePort == .perWorker, inherited != nil,
                            let first = adopted.first(where: { $0.name == listener.name && $0.address == listener.address })
                        else { throw error }
                        opened.append(
                            try share(
                                listener, adopted: first, reason: "a sibling socket cannot be bound (\(error))",
                                remedy:
                                    "the kernel keeps a reuseport group to the user that opened its first socket, so run Baton as that user (root for a socket unit: no User= or DynamicUser= in the service; --user runs the workers as another)"
                            ))
                        configuration.listeners[index].reusePort = .shared
                        break
                    }
                    descriptors[key] = fd
                    opened.append(key)
                    systemd.store(fd, name: listener.name)
                    steering.join(fd, listener)
                }
            }
            for listener in configuration.listeners {
                try steering.configureFlows(listener)
            }
        } catch {
            for key in opened {
                close(key)
            }
            throw error
        }
        if let inherited {
            for name in inherited.closeUnclaimed(logger: logger) where !descriptors.keys.contains(where: { $0.name == name }) {
                systemd.removeFromStore(name: name)
            }
            self.inherited = nil
        }
        return configuration
    }

    /// Turns a `per-worker` listener into a `shared` one around the socket systemd passed.
    /// A warning, with `remedy`: the listener is not steered, so a dead or draining
    /// worker's slot still takes new connections.
    private func share(_ listener: ListenerConfiguration, adopted key: Key, reason: String, remedy: String) throws(AdoptionError) -> Key {
        guard key.slot == 0, let fd = descriptors.removeValue(forKey: key) else {
            throw .cannotServeEverySlot(listener: listener, reason: reason)
        }
        var shared = listener
        shared.reusePort = .shared
        let sharedKey = Key(shared, slot: 0)
        descriptors[sharedKey] = fd
        if adopted.remove(key) != nil { adopted.insert(sharedKey) }
        sharedInstead.insert(listener.address)
        logger.warning(
            "listener \(listener.name) \(listener.address) is shared by every slot, so steering is off for it: the socket systemd passed cannot have per-worker siblings, as \(reason); \(remedy) (Docs/systemd.md)"
        )
        return sharedKey
    }

    /// The sockets of one slot of generation `generation`, in listener order, with
    /// their names. A steered listener's socket is the generation's own: one that no
    /// generation took yet (opened by ``prepare(_:)``, or passed by systemd), else a
    /// new one in the same group, outside the rotation until the generation serves.
    func sockets(for configuration: Configuration, slot: Int, generation: Int) throws(SystemError) -> [(name: String, fd: Int32)] {
        var result: [(name: String, fd: Int32)] = []
        for listener in configuration.listeners {
            let shared = Key(listener, slot: slot)
            guard isSteered(listener) else {
                if let fd = descriptors[shared] { result.append((listener.name, fd)) }
                continue
            }
            let own = shared.of(generation: generation)
            if descriptors[own] == nil {
                if let fd = descriptors.removeValue(forKey: shared) {
                    descriptors[own] = fd
                    if adopted.remove(shared) != nil { adopted.insert(own) }
                } else {
                    let backlog = min(listener.backlog ?? maximumBacklog, maximumBacklog)
                    let fd = try ListenerSocket.open(listener, backlog: backlog)
                    descriptors[own] = fd
                    systemd.store(fd, name: listener.name)
                    steering.join(fd, listener)
                }
            }
            if let fd = descriptors[own] { result.append((listener.name, fd)) }
        }
        return result
    }

    // MARK: - Steering

    /// Whether the listener's sockets are steered: each generation has its own, and the
    /// rotation picks among them.
    func isSteered(_ listener: ListenerConfiguration) -> Bool {
        steering.isSteered(listener)
    }

    /// Makes exactly the sockets of these slots, each of its generation, take the new
    /// connections of every steered listener of `configuration` (during a rolling
    /// reload, whose generations have the same listeners).
    func steer(_ rotation: [Int: [Int]], configuration: Configuration) {
        let generations = rotation.keys.sorted()
        let described = generations.map { "generation \($0) slots \(rotation[$0]!)" }.joined(separator: ", ")
        for listener in configuration.listeners where isSteered(listener) {
            let sockets = generations.flatMap { generation in
                rotation[generation]!.compactMap { descriptors[Key(listener, slot: $0, generation: generation)] }
            }
            guard !sockets.isEmpty else { continue }
            steering.steer(listener, to: sockets, described: described)
        }
        steering.refuseRemovedListeners(serving: configuration.listeners)
    }

    /// Moves what the slot's own sockets in generation `generation` hold to the sockets
    /// in rotation (the slot must be out of it) and, with `listenAgain`, makes them listen
    /// again for the slot's next worker. TCP only: a datagram socket's queue cannot
    /// migrate.
    func evacuate(generation: Int, slot: Int, configuration: Configuration, listenAgain: Bool) {
        for listener in configuration.listeners where isSteered(listener) && listener.address.isStream {
            let key = Key(listener, slot: slot, generation: generation)
            guard let fd = descriptors[key], !steering.isInRotation(fd, at: key.address) else { continue }
            if shutdown(fd, Int32(SHUT_RD)) != 0 {
                logger.warning("listener \(key.name) \(key.address) slot \(slot): \(SystemError.last("shutdown"))")
            }
            guard listenAgain else { continue }
            let backlog = min(listener.backlog ?? maximumBacklog, maximumBacklog)
            if Glibc.listen(fd, backlog) != 0 {
                logger.error("listener \(key.name) \(key.address) slot \(slot): \(SystemError.last("listen")); the slot's next worker cannot accept")
            }
        }
    }

    /// Whether every socket of generation `generation`'s own (of one slot, if given) is empty: no connection in
    /// a stream socket's accept queue, no datagram waiting in a datagram socket.
    func ownSocketsAreEmpty(generation: Int, slot: Int? = nil) -> Bool {
        descriptors.allSatisfy { key, fd in
            guard key.generation == generation, slot == nil || key.slot == slot else { return true }
            if key.address.isStream {
                return (ListenerSocket.acceptQueue(fd)?.depth ?? 0) == 0
            }
            return !ListenerSocket.hasPendingDatagram(fd)
        }
    }

    /// Generation `generation`'s own listening TCP sockets (of one slot, if given), one
    /// per address: where its workers' connections are looked up.
    func ownStreamSockets(generation: Int, slot: Int? = nil) -> [Int32] {
        var byAddress: [ListenerAddress: Int32] = [:]
        for (key, fd) in descriptors where key.generation == generation && (slot == nil || key.slot == slot) {
            if case .tcp = key.address { byAddress[key.address] = fd }
        }
        return Array(byAddress.values)
    }

    /// For each steered TCP listener of `configuration`: how many connections the
    /// steering program has given the slot's own socket in generation `generation`, and
    /// how many wait in its accept queue.
    func acceptCounts(generation: Int, slot: Int, configuration: Configuration) -> [(listener: String, steered: UInt64, queued: UInt32)] {
        configuration.listeners.compactMap { listener in
            guard isSteered(listener), listener.address.isStream,
                let fd = descriptors[Key(listener, slot: slot, generation: generation)],
                let steered = steering.selections(of: fd, at: listener.address),
                let queue = ListenerSocket.acceptQueue(fd)
            else { return nil }
            return (listener.name, steered, queue.depth)
        }
    }

    /// Whether generation `generation` has sockets of its own.
    func hasOwnSockets(generation: Int) -> Bool {
        descriptors.keys.contains { $0.generation == generation }
    }

    /// Closes every socket that none of these generations (by number) uses.
    func retain(for generations: [Int: Configuration]) {
        var needed = Set<Key>()
        for (generation, configuration) in generations {
            for listener in configuration.listeners {
                for slot in 0..<configuration.workers.count {
                    needed.insert(Key(listener, slot: slot, generation: isSteered(listener) ? generation : nil))
                }
            }
        }
        for key in descriptors.keys where !needed.contains(key) {
            logger.info(
                "closing listener \(key.name) \(key.address)\(key.slot.map { " slot \($0)" } ?? "")\(key.generation.map { " of generation \($0)" } ?? "")")
            close(key)
        }
    }

    /// Closes every socket at exit. The fd store keeps its copies (and their unix
    /// socket paths stay): a restart of the service adopts them again, and a stop lets
    /// systemd drop them.
    func closeAll() {
        for key in descriptors.keys {
            close(key, exiting: true)
        }
        steering.closeAll()
    }

    private func close(_ key: Key, exiting: Bool = false) {
        guard let fd = descriptors.removeValue(forKey: key) else { return }
        Glibc.close(fd)
        if !exiting, !descriptors.keys.contains(where: { $0.address == key.address }) {
            steering.close(key.address)
        }
        let wasAdopted = adopted.remove(key) != nil
        let siblings = descriptors.filter { $0.key.name == key.name }
        // Never the path of a socket systemd made, nor one the fd store keeps.
        if case .unix(let path) = key.address, !wasAdopted, !(exiting && systemd.enabled),
            !siblings.keys.contains(where: { $0.address == key.address })
        {
            unlink(path)
        }
        guard !exiting else { return }
        // The store forgets by name only: forget them all, then store the rest again.
        systemd.removeFromStore(name: key.name)
        for sibling in siblings.values {
            systemd.store(sibling, name: key.name)
        }
    }
}
