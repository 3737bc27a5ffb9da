import CBatonShim
import Glibc

/// Decides which sockets of one `SO_REUSEPORT` group take new connections (and
/// datagrams), instead of the kernel's hash over every socket of the group, and where the
/// connections queued in a listener go when it closes or stops listening. Docs/steering.md.
///
/// The kernel program picks `sockets[rotation[hash % count]]`:
/// - `sockets`, a reuseport socket array of `capacity` entries. The kernel keeps a socket
///   in at most one entry (a second gets EBUSY), so a socket keeps its entry for as long
///   as it is open and listening, whichever rotations it is part of.
/// - `rotation`, the entries taking connections, by index; `count`, how many indices are
///   in use. With `count` 0 (before the first `steer`) the kernel hashes over the group.
///
/// (An entry of the map is not a worker's slot: a slot's socket of each generation has
/// an entry of its own.)
///
/// The invariant `steer` keeps: at every instant, every index below `count` names an
/// entry that holds a socket of the old or of the new rotation. So no connection is ever
/// given to a socket outside both, nor handed back to the kernel's hash.
///
/// The group alone knows which sockets are in rotation (``isInRotation(_:)``).
///
/// One owner drives it (the supervisor's event loop); it is not `Sendable`.
final class SteeringGroup {
    /// Entries for sockets: at least every socket of two consecutive rotations together.
    let capacity: Int
    private var steering: baton_steering
    /// Entries that an index below `count` may name: those of the rotation in effect.
    private var inRotation = Set<UInt32>()
    /// The entry each socket (by cookie) was placed in: where to look for its counter
    /// without reading every entry. The kernel empties an entry when its socket closes,
    /// so what this says is checked against the entry before it is believed.
    private var placed: [UInt64: UInt32] = [:]

    /// Creates the program and its maps. Fails without `CAP_BPF` (`bpf`, `EPERM`), and
    /// on kernels older than 5.14 (which do not know the select-or-migrate attach type).
    init(capacity: Int, flowCapacity: Int = Settings.defaultFlowTableSize) throws(SystemError) {
        self.capacity = capacity
        guard capacity > 0, capacity <= Int(UInt32.max), flowCapacity > 0, flowCapacity <= Int(UInt32.max) else {
            throw SystemError("bpf", errno: EINVAL, subject: "reuseport steering with \(capacity) entries and \(flowCapacity) flows")
        }
        var steering = baton_steering()
        var failure = [CChar](repeating: 0, count: 256)
        let error = baton_steering_create(UInt32(capacity), UInt32(flowCapacity), &steering, &failure, failure.count)
        guard error == 0 else {
            let step = String(decoding: failure.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw SystemError("bpf", errno: error, subject: "reuseport steering (\(step))")
        }
        self.steering = steering
    }

    /// Takes over the program and maps a replaced Baton handed over (`batonctl
    /// upgrade`), still attached to the group and steering by its last rotation. A new
    /// program's map could not take the group's sockets until the kernel had freed the
    /// old map, which holds them (EBUSY). Which entries hold which socket is read back;
    /// every occupied entry counts as in rotation until the next ``steer(to:)``.
    init(adopting handedOver: baton_steering) {
        steering = handedOver
        capacity = Int(handedOver.capacity)
        for entry in 0..<UInt32(capacity) {
            var occupant: UInt64 = 0
            if baton_steering_occupant(&steering, entry, &occupant) == 0, occupant != 0 {
                placed[occupant] = entry
                inRotation.insert(entry)
            }
        }
        for fd in descriptors { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }

    /// What an upgrade in place hands over: the program and its maps.
    var handedOver: baton_steering { steering }

    /// The program's and maps' descriptors, which an upgrade in place keeps open.
    var descriptors: [Int32] {
        [
            steering.program, steering.sockets, steering.rotation, steering.count, steering.counters,
            steering.settings, steering.flows, steering.tags, steering.cookies, steering.decisions,
        ].filter { $0 >= 0 }
    }

    /// Whether the program and maps can keep flows: not a group handed over by a Baton
    /// that had no flow maps.
    var keepsFlows: Bool { steering.flows >= 0 }

    /// Flows the flow table holds at most.
    var flowCapacity: Int { Int(steering.flow_capacity) }

    /// Sets how the program steers the datagrams of existing flows (a UDP listener's
    /// `flows`), and how long an idle flow is kept.
    func configure(_ flows: Flows, idleTimeout: Duration) throws(SystemError) {
        let mode: UInt32 =
            switch flows {
            case .none: UInt32(BATON_STEERING_FLOWS_NONE)
            case .tuple: UInt32(BATON_STEERING_FLOWS_TUPLE)
            case .quic: UInt32(BATON_STEERING_FLOWS_QUIC)
            }
        let error = baton_steering_configure(&steering, mode, UInt64(max(0, idleTimeout.nanoseconds)))
        guard error == 0 else {
            throw SystemError(
                "bpf", errno: error,
                subject: error == ENOTSUP
                    ? "reuseport steering: the program a Baton without flows handed over keeps no flows (restart Baton, or remove the listener and add it back)"
                    : "reuseport steering: setting flows = \(flows.rawValue)")
        }
    }

    /// How many datagrams the program steered by each of its decisions: by QUIC cookie,
    /// by flow, as a new flow, and back to the rotation after the socket of a known
    /// flow or cookie had closed.
    func decisions() -> (cookie: UInt64, flow: UInt64, new: UInt64, fallback: UInt64)? {
        var values: [UInt64] = []
        for decision in 0..<UInt32(BATON_STEERING_DECISIONS) {
            var value: UInt64 = 0
            guard baton_steering_read_decision(&steering, decision, &value) == 0 else { return nil }
            values.append(value)
        }
        return (values[0], values[1], values[2], values[3])
    }

    /// How many flows the flow table holds for each socket (by descriptor) of `fds`
    /// that holds an entry: one pass over the table.
    func flows(of fds: [Int32]) -> [Int32: UInt64] {
        guard keepsFlows else { return [:] }
        var counts = [UInt64](repeating: 0, count: capacity)
        var tags = [UInt32](repeating: 0, count: capacity)
        guard baton_steering_count_flows(&steering, &counts, &tags, UInt32(capacity)) == 0 else { return [:] }
        var result: [Int32: UInt64] = [:]
        for fd in fds {
            if let entry = entry(of: fd) { result[fd] = counts[Int(entry)] }
        }
        return result
    }

    deinit {
        close()
    }

    /// Attaches the program to the group of `fd`, a listening (TCP) or bound (UDP)
    /// socket with `SO_REUSEPORT`. The group keeps the program, and replaces any program
    /// attached before, until its last socket closes.
    func attach(to fd: Int32) throws(SystemError) {
        let error = baton_steering_attach(&steering, fd)
        guard error == 0 else {
            throw SystemError("setsockopt", errno: error, subject: "reuseport steering: SO_ATTACH_REUSEPORT_EBPF on fd \(fd)")
        }
    }

    /// Gives new connections (and those migrating off a closing listener) to `sockets`
    /// only, each as many times as it is listed: the share of a socket is its number of
    /// entries over `sockets.count`. Every socket must be listening (or bound, for UDP)
    /// in the group this program is attached to.
    ///
    /// The order keeps the invariant: new sockets go into free entries, which no index
    /// below `count` names; then each index 0..<n is overwritten with its new entry (one
    /// live socket replacing another); only then is `count` set to n. Sockets taken out of
    /// the rotation must stay open until this returns, as a selection that read the old
    /// `count` may still pick them; afterwards they keep their entry until they close or
    /// stop listening (or their entry is needed), and are given nothing.
    ///
    /// An empty `sockets` is refused (`EINVAL`) and the rotation in effect stays: with
    /// nothing in rotation the kernel would hash over every socket of the group, ready or
    /// draining. On any error the old rotation stays in effect (some of its indices may
    /// already name sockets of the new one).
    func steer(to sockets: [Int32]) throws(SystemError) {
        let subject = "reuseport steering"
        guard !sockets.isEmpty else {
            throw SystemError(
                "steer", errno: EINVAL, subject: "\(subject): an empty rotation would let the kernel pick any socket of the group; the last rotation stays")
        }
        guard sockets.count <= capacity else {
            throw SystemError("steer", errno: E2BIG, subject: "\(subject): \(sockets.count) sockets for \(capacity) entries")
        }
        var occupants = self.occupants()
        var entries: [UInt32] = []
        for fd in sockets {
            let cookie = try Self.cookie(of: fd)
            if let entry = occupants.firstIndex(of: cookie) {
                placed[cookie] = UInt32(entry)
                entries.append(UInt32(entry))
                continue
            }
            // An empty entry, else one whose socket is in neither rotation.
            let kept = inRotation.union(entries)
            guard
                let entry = occupants.indices.first(where: { occupants[$0] == nil })
                    ?? occupants.indices.first(where: { !kept.contains(UInt32($0)) })
            else {
                throw SystemError("steer", errno: ENOSPC, subject: "\(subject): the old and the new rotation need more than \(capacity) entries")
            }
            if occupants[entry] != nil {
                _ = baton_steering_remove(&steering, UInt32(entry))
            }
            let error = baton_steering_place(&steering, UInt32(entry), fd)
            guard error == 0 else {
                throw SystemError(
                    "bpf", errno: error, subject: "\(subject): placing fd \(fd) (a listening or bound SO_REUSEPORT socket, in no other steering group)")
            }
            occupants[entry] = cookie
            placed[cookie] = UInt32(entry)
            entries.append(UInt32(entry))
        }
        for (index, entry) in entries.enumerated() {
            let error = baton_steering_set_rotation(&steering, UInt32(index), entry)
            guard error == 0 else {
                inRotation.formUnion(entries)
                throw SystemError("bpf", errno: error, subject: "\(subject): rotation index \(index)")
            }
        }
        let error = baton_steering_set_count(&steering, UInt32(entries.count))
        guard error == 0 else {
            inRotation.formUnion(entries)
            throw SystemError("bpf", errno: error, subject: "\(subject): rotation count")
        }
        inRotation = Set(entries)
    }

    /// Drops every new connection (or datagram) and every migration from now on, until
    /// the next ``steer(to:)``: for a listener being removed, whose sockets still accept
    /// what they queued before they close. A client's dropped SYN is sent again, and
    /// refused once the sockets are closed.
    func refuseNewConnections() throws(SystemError) {
        let error = baton_steering_set_count(&steering, BATON_STEERING_CLOSED)
        guard error == 0 else { throw SystemError("bpf", errno: error, subject: "reuseport steering: closing the group") }
        inRotation = []
    }

    /// How many connections (or datagrams) the program has given `fd` since it last took
    /// an entry; nil when it holds none.
    func selections(of fd: Int32) -> UInt64? {
        guard let entry = entry(of: fd) else { return nil }
        var selections: UInt64 = 0
        guard baton_steering_read_counter(&steering, entry, &selections) == 0 else { return nil }
        return selections
    }

    /// Whether an index below `count` may name `fd`'s entry: the socket is in the
    /// rotation in effect (or, after a failed ``steer(to:)``, in the old or the new one),
    /// and must not be emptied.
    func isInRotation(_ fd: Int32) -> Bool {
        entry(of: fd).map(inRotation.contains) ?? false
    }

    /// The entry `fd` holds, checked against the map.
    private func entry(of fd: Int32) -> UInt32? {
        guard let cookie = try? Self.cookie(of: fd), let entry = placed[cookie] else { return nil }
        var occupant: UInt64 = 0
        guard baton_steering_occupant(&steering, entry, &occupant) == 0, occupant == cookie else {
            placed[cookie] = nil
            return nil
        }
        return entry
    }

    /// Closes Baton's descriptors of the program and maps. A group the program is
    /// attached to keeps steering by the last rotation, which can then no longer change:
    /// close when the group's sockets are closed.
    func close() {
        baton_steering_close(&steering)
    }

    /// The cookie of the socket in each entry, nil for an empty one. Only the entries this
    /// group placed a socket in can be occupied, so only those are read from the kernel
    /// (an entry empties by itself when its socket closes or stops listening).
    private func occupants() -> [UInt64?] {
        var occupants = [UInt64?](repeating: nil, count: capacity)
        for (cookie, entry) in placed {
            var occupant: UInt64 = 0
            if baton_steering_occupant(&steering, entry, &occupant) == 0, occupant == cookie {
                occupants[Int(entry)] = cookie
            } else {
                placed[cookie] = nil
            }
        }
        return occupants
    }

    private static func cookie(of fd: Int32) throws(SystemError) -> UInt64 {
        var cookie: UInt64 = 0
        let error = baton_socket_cookie(fd, &cookie)
        guard error == 0 else { throw SystemError("getsockopt", errno: error, subject: "reuseport steering: SO_COOKIE of fd \(fd)") }
        return cookie
    }
}
