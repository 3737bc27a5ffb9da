import CBatonShim
import Glibc
import Logging

/// Every listening socket Baton holds, by listener and slot.
///
/// Sockets are opened when a configuration first needs them and closed only when no
/// alive generation's configuration uses them any more, so a reload never closes a
/// socket its workers share. Closing a TCP `per-worker` socket happens with the
/// reuseport migration program attached, so its queued connections move to a sibling.
final class SocketTable {
    /// One socket: for a `shared` listener `slot` is nil.
    struct Key: Hashable {
        var name: String
        var address: ListenerAddress
        var reusePort: ReusePortMode
        var slot: Int?

        init(name: String, address: ListenerAddress, reusePort: ReusePortMode, slot: Int?) {
            self.name = name
            self.address = address
            self.reusePort = reusePort
            self.slot = slot
        }

        init(_ listener: ListenerConfiguration, slot: Int) {
            name = listener.name
            address = listener.address
            reusePort = listener.reusePort
            self.slot = listener.reusePort == .perWorker ? slot : nil
        }
    }

    private(set) var descriptors: [Key: Int32] = [:]
    private let logger: Logger
    private let systemd: SystemdNotifier
    private let maximumBacklog = ListenerSocket.systemMaximumBacklog()
    private var warnedAboutMigration = false
    /// What systemd passed at start, until the first configuration has adopted it.
    private var inherited: InheritedSockets?
    /// Listeners configured `per-worker` whose socket from systemd every slot must share.
    private var sharedInstead = Set<ListenerAddress>()
    /// Sockets that came from systemd.
    private var adopted = Set<Key>()

    init(logger: Logger, systemd: SystemdNotifier, inherited: InheritedSockets) {
        self.logger = logger
        self.systemd = systemd
        self.inherited = inherited
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
                    if let fd = descriptors[key] {
                        // A socket unit's Backlog= stands unless the configuration sets one.
                        if listener.address.isStream, listener.backlog != nil || !adopted.contains(key) {
                            try? ListenerSocket.setBacklog(fd, backlog)
                        }
                        continue
                    }
                    if let socket = try inherited?.adopt(for: listener) {
                        logger.info("listener \(listener.name) \(listener.address) adopted fd \(socket.fd) from systemd")
                        descriptors[key] = socket.fd
                        adopted.insert(key)
                        opened.append(key)
                        if listener.address.isStream, listener.backlog != nil { try? ListenerSocket.setBacklog(socket.fd, backlog) }
                        if listener.reusePort == .perWorker, !socket.identity.reusePort {
                            opened.append(try share(listener, adopted: key, reason: "it has no SO_REUSEPORT (ReusePort=yes in the socket unit)"))
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
                        opened.append(try share(listener, adopted: first, reason: "a sibling socket cannot be bound (\(error))"))
                        configuration.listeners[index].reusePort = .shared
                        break
                    }
                    descriptors[key] = fd
                    opened.append(key)
                    systemd.store(fd, name: listener.name)
                    if case .tcp = listener.address, listener.reusePort == .perWorker {
                        attachMigrationProgram(fd, listener: listener)
                    }
                }
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
    private func share(_ listener: ListenerConfiguration, adopted key: Key, reason: String) throws(AdoptionError) -> Key {
        guard key.slot == 0, let fd = descriptors.removeValue(forKey: key) else {
            throw AdoptionError("listener \(listener.name) \(listener.address): the sockets systemd passed cannot serve every slot (\(reason)); set reuseport = \"shared\"")
        }
        var shared = listener
        shared.reusePort = .shared
        let sharedKey = Key(shared, slot: 0)
        descriptors[sharedKey] = fd
        if adopted.remove(key) != nil { adopted.insert(sharedKey) }
        sharedInstead.insert(listener.address)
        logger.notice("listener \(listener.name) \(listener.address) is shared by every slot: the socket systemd passed cannot have per-worker siblings, as \(reason)")
        return sharedKey
    }

    /// The sockets of one slot, in listener order, with their names.
    func sockets(for configuration: Configuration, slot: Int) -> [(name: String, fd: Int32)] {
        configuration.listeners.compactMap { listener in
            descriptors[Key(listener, slot: slot)].map { (listener.name, $0) }
        }
    }

    /// Closes every socket none of `configurations` uses.
    func retain(for configurations: [Configuration]) {
        var needed = Set<Key>()
        for configuration in configurations {
            for listener in configuration.listeners {
                for slot in 0..<configuration.workers.count {
                    needed.insert(Key(listener, slot: slot))
                }
            }
        }
        for key in descriptors.keys where !needed.contains(key) {
            logger.info("closing listener \(key.name) \(key.address)\(key.slot.map { " slot \($0)" } ?? "")")
            close(key)
        }
    }

    // MARK: - Upgrade in place

    /// Every socket, for the Baton that replaces this one in place.
    func handOver() -> (sockets: [UpgradeHandover.Socket], sharedInstead: [ListenerAddress]) {
        let sockets = descriptors.map { key, fd in
            UpgradeHandover.Socket(name: key.name, address: key.address, reusePort: key.reusePort,
                                   slot: key.slot, fd: fd, adopted: adopted.contains(key))
        }
        return (sockets, Array(sharedInstead))
    }

    /// Takes the sockets the replaced Baton handed over; they are what systemd or an
    /// earlier configuration gave, so nothing is opened, adopted or stored here.
    func take(_ handover: UpgradeHandover) {
        for socket in handover.sockets {
            _ = fcntl(socket.fd, F_SETFD, FD_CLOEXEC)
            let key = Key(name: socket.name, address: socket.address, reusePort: socket.reusePort, slot: socket.slot)
            descriptors[key] = socket.fd
            if socket.adopted { adopted.insert(key) }
        }
        sharedInstead = Set(handover.sharedInstead)
    }

    /// Closes every socket at exit. The fd store keeps its copies (and their unix
    /// socket paths stay): a restart of the service adopts them again, and a stop lets
    /// systemd drop them.
    func closeAll() {
        for key in descriptors.keys {
            close(key, exiting: true)
        }
    }

    private func close(_ key: Key, exiting: Bool = false) {
        guard let fd = descriptors.removeValue(forKey: key) else { return }
        Glibc.close(fd)
        let wasAdopted = adopted.remove(key) != nil
        let siblings = descriptors.filter { $0.key.name == key.name }
        // Never the path of a socket systemd made, nor one the fd store keeps.
        if case .unix(let path) = key.address, !wasAdopted, !(exiting && systemd.enabled),
           !siblings.keys.contains(where: { $0.address == key.address }) {
            unlink(path)
        }
        guard !exiting else { return }
        // The store forgets by name only: forget them all, then store the rest again.
        systemd.removeFromStore(name: key.name)
        for sibling in siblings.values {
            systemd.store(sibling, name: key.name)
        }
    }

    private func attachMigrationProgram(_ fd: Int32, listener: ListenerConfiguration) {
        let error = baton_attach_migration_program(fd)
        guard error != 0, !warnedAboutMigration else { return }
        warnedAboutMigration = true
        let sysctl = (try? FileContents.read("/proc/sys/net/ipv4/tcp_migrate_req")) ?? "0"
        if sysctl.hasPrefix("1") {
            logger.info("reuseport migration program not attached (\(SystemError("bpf", errno: error))); net.ipv4.tcp_migrate_req=1 migrates queued connections instead")
        } else {
            logger.warning("reuseport migration program not attached (\(SystemError("bpf", errno: error))): when a listener or slot is removed, connections queued in its socket are reset; set net.ipv4.tcp_migrate_req=1 or run Baton with CAP_BPF")
        }
    }
}
