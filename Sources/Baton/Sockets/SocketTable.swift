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

        init(_ listener: ListenerConfiguration, slot: Int) {
            name = listener.name
            address = listener.address
            reusePort = listener.reusePort
            self.slot = listener.reusePort == .perWorker ? slot : nil
        }
    }

    private(set) var descriptors: [Key: Int32] = [:]
    private let logger: Logger
    private let maximumBacklog = ListenerSocket.systemMaximumBacklog()
    private var warnedAboutMigration = false

    init(logger: Logger) {
        self.logger = logger
    }

    /// Opens what `configuration` needs and does not have yet. On failure, closes what
    /// this call opened and leaves everything else as it was.
    func prepare(_ configuration: Configuration) throws(SystemError) {
        var opened: [Key] = []
        do {
            for listener in configuration.listeners {
                let backlog = min(listener.backlog ?? maximumBacklog, maximumBacklog)
                for slot in 0..<configuration.workers.count {
                    let key = Key(listener, slot: slot)
                    if let fd = descriptors[key] {
                        if listener.address.isStream { ListenerSocket.setBacklog(fd, backlog) }
                        continue
                    }
                    let fd = try ListenerSocket.open(listener, backlog: backlog)
                    descriptors[key] = fd
                    opened.append(key)
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

    func closeAll() {
        for key in descriptors.keys {
            close(key)
        }
    }

    private func close(_ key: Key) {
        guard let fd = descriptors.removeValue(forKey: key) else { return }
        Glibc.close(fd)
        if case .unix(let path) = key.address, !descriptors.keys.contains(where: { $0.address == key.address }) {
            unlink(path)
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
