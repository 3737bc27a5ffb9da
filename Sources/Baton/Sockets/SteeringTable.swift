import CBatonShim
import Glibc
import Logging

/// The steering of every steered listener's reuseport group, by address: the one owner
/// of the rotation (which sockets take new connections), which each group keeps in its
/// kernel maps. Where the program cannot be loaded, steering is off for the whole
/// service and every listener falls back to the kernel's hash.
final class SteeringTable {
    private let logger: Logger
    private var groups: [ListenerAddress: SteeringGroup] = [:]
    /// Why steering is off for the whole service (set when the program could not be loaded).
    private var unavailable: String?
    /// Groups of listeners the serving configuration no longer has: they take no new
    /// connection until their last socket closes.
    private var closing = Set<ListenerAddress>()

    init(logger: Logger) {
        self.logger = logger
    }

    /// Whether the listener's sockets are steered: each generation has its own, and the
    /// rotation picks among them.
    func isSteered(_ listener: ListenerConfiguration) -> Bool {
        listener.reusePort == .perWorker && listener.address.supportsReusePort && groups[listener.address] != nil
    }

    /// Puts a new socket of a `per-worker` TCP or UDP listener under its group's
    /// steering program, loading the program for the group first if needed. Where the
    /// program cannot be loaded, says once what Baton falls back to.
    func join(_ fd: Int32, _ listener: ListenerConfiguration) {
        guard listener.reusePort == .perWorker, listener.address.supportsReusePort, unavailable == nil else { return }
        do throws(SystemError) {
            let group: SteeringGroup
            if let existing = groups[listener.address] {
                group = existing
            } else {
                group = try SteeringGroup(
                    capacity: 2 * Settings.slots.upperBound, flowCapacity: listener.flowTableSize ?? Settings.defaultFlowTableSize)
            }
            try group.attach(to: fd)
            groups[listener.address] = group
        } catch {
            unavailable = "\(error)"
            for group in groups.values { group.close() }
            groups = [:]
            let sysctl = (try? FileContents.read("/proc/sys/net/ipv4/tcp_migrate_req")) ?? "0"
            let migration =
                sysctl.hasPrefix("1")
                ? "net.ipv4.tcp_migrate_req=1 migrates what a closing socket holds"
                : "a socket that closes (a slot or listener removed) resets what it holds; set net.ipv4.tcp_migrate_req=1"
            logger.warning(
                "steering is off (\(error)): the kernel's hash spreads new connections over every slot's socket, those of dead or draining workers included, and generations share their sockets; \(migration). \(SteeringGroup.remedy(for: error)) (Docs/steering.md)"
            )
        }
    }

    /// Sets how the program steers the datagrams of the listener's existing flows. A
    /// listener with `flows` other than `none` whose group has no program (steering is
    /// off) or whose program keeps no flows is a configuration error: its flows would
    /// silently break at every reload.
    func configureFlows(_ listener: ListenerConfiguration) throws(FlowsUnavailable) {
        guard let group = groups[listener.address] else {
            guard listener.flows != .none else { return }
            throw FlowsUnavailable(listener: listener, reason: unavailable ?? "the listener's sockets are not steered")
        }
        guard case .udp = listener.address else { return }
        do {
            try group.configure(listener.flows, idleTimeout: listener.flowIdleTimeout ?? Settings.defaultFlowIdleTimeout)
        } catch {
            guard listener.flows != .none else { return }
            throw FlowsUnavailable(listener: listener, reason: "\(error)")
        }
        if let size = listener.flowTableSize, size != group.flowCapacity, listener.flows != .none {
            logger.notice(
                "listener \(listener.name) \(listener.address): flow_table_size = \(size) takes effect when the listener is opened anew; its flow table keeps \(group.flowCapacity) flows"
            )
        }
    }

    /// Makes exactly `sockets` take the listener's new connections; `described` says
    /// which they are, for the log line of a failure.
    func steer(_ listener: ListenerConfiguration, to sockets: [Int32], described: String) {
        guard let group = groups[listener.address] else { return }
        do {
            try group.steer(to: sockets)
            closing.remove(listener.address)
        } catch {
            logger.error("listener \(listener.name) \(listener.address): the rotation could not be changed to \(described): \(error)")
        }
    }

    /// A listener the configuration `serving` removed: its sockets accept what they
    /// hold, and nothing new, until they close.
    func refuseRemovedListeners(serving: [ListenerConfiguration]) {
        let served = Set(serving.map(\.address))
        for (address, group) in groups where !served.contains(address) && !closing.contains(address) {
            do {
                try group.refuseNewConnections()
                closing.insert(address)
                logger.info(
                    "listener \(address) was removed: it takes no new connection; the replaced generation accepts what its sockets hold, then they close")
            } catch {
                logger.error(
                    "listener \(address) was removed, but its new connections cannot be refused: \(error); what its sockets hold when they close is reset")
            }
        }
    }

    /// Whether the socket `fd` of the listener at `address` is in its group's rotation.
    func isInRotation(_ fd: Int32, at address: ListenerAddress) -> Bool {
        groups[address]?.isInRotation(fd) ?? false
    }

    /// The steering group of the listener at `address`, for its flows and decisions.
    func group(at address: ListenerAddress) -> SteeringGroup? {
        groups[address]
    }

    /// How many connections the program has given the socket `fd` of the listener at `address`.
    func selections(of fd: Int32, at address: ListenerAddress) -> UInt64? {
        groups[address]?.selections(of: fd)
    }

    /// The group of a listener whose last socket closed: its program and maps go.
    func close(_ address: ListenerAddress) {
        groups.removeValue(forKey: address)?.close()
        closing.remove(address)
    }

    func closeAll() {
        for group in groups.values { group.close() }
        groups = [:]
    }

    // MARK: - Upgrade in place

    /// Every group's program and maps, for the Baton that replaces this one in place.
    func handOver() -> [UpgradeHandover.Steering] {
        groups.map { address, group in
            let handed = group.handedOver
            func optional(_ fd: Int32) -> Int32? { fd >= 0 ? fd : nil }
            return UpgradeHandover.Steering(
                address: address, program: handed.program, sockets: handed.sockets,
                rotation: handed.rotation, count: handed.count, counters: handed.counters,
                capacity: handed.capacity, settings: optional(handed.settings), flows: optional(handed.flows),
                tags: optional(handed.tags), cookies: optional(handed.cookies), decisions: optional(handed.decisions),
                flowCapacity: handed.flows >= 0 ? handed.flow_capacity : nil)
        }
    }

    /// Takes over the programs the replaced Baton handed over: they go on steering by
    /// their maps (SteeringGroup.init(adopting:)), flows included. A group from a Baton
    /// without flow maps keeps its program, which keeps no flows: a listener with
    /// `flows` is then refused (``configureFlows(_:)``) until Baton restarts.
    func take(_ handedOver: [UpgradeHandover.Steering]) {
        for handed in handedOver {
            groups[handed.address] = SteeringGroup(
                adopting: baton_steering(
                    program: handed.program, sockets: handed.sockets, rotation: handed.rotation, count: handed.count,
                    counters: handed.counters, capacity: handed.capacity, settings: handed.settings ?? -1,
                    flows: handed.flows ?? -1, tags: handed.tags ?? -1, cookies: handed.cookies ?? -1,
                    decisions: handed.decisions ?? -1, flow_capacity: handed.flowCapacity ?? 0))
        }
    }
}

/// A listener asks for `flows` that the steering program cannot keep.
struct FlowsUnavailable: Error, CustomStringConvertible {
    var listener: ListenerConfiguration
    var reason: String

    var description: String {
        "listener \(listener.name) \(listener.address): flows = \"\(listener.flows.rawValue)\" needs Baton's steering program, which is not available (\(reason)); Run Baton as root or with CAP_BPF on Linux 5.14 or later, or set flows = \"none\" (Docs/steering.md)"
    }
}
