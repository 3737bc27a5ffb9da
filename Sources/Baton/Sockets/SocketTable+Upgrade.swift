import Glibc

/// The upgrade handover: every socket and steering program goes to the Baton that
/// replaces this one in place, which takes them as they are.
extension SocketTable {
    /// Every socket, for the Baton that replaces this one in place.
    func handOver() -> (sockets: [UpgradeHandover.Socket], sharedInstead: [ListenerAddress], steering: [UpgradeHandover.Steering]) {
        let sockets = descriptors.map { key, fd in
            UpgradeHandover.Socket(
                name: key.name, address: key.address, reusePort: key.reusePort,
                slot: key.slot, generation: key.generation, fd: fd, adopted: adopted.contains(key))
        }
        return (sockets, Array(sharedInstead), steering.handOver())
    }

    /// Takes the sockets the replaced Baton handed over; they are what systemd or an
    /// earlier configuration gave, so nothing is opened, adopted or stored here.
    func take(_ handover: UpgradeHandover) {
        steering.take(handover.steering ?? [])
        for socket in handover.sockets {
            _ = fcntl(socket.fd, F_SETFD, FD_CLOEXEC)
            let key = Key(
                name: socket.name, address: socket.address, reusePort: socket.reusePort,
                slot: socket.slot, generation: socket.generation)
            descriptors[key] = socket.fd
            if socket.adopted { adopted.insert(key) }
            if socket.generation != nil, let listener = handover.configuration.listeners.first(where: { $0.address == socket.address }) {
                // Under the handed-over program (attached again, which changes nothing),
                // or, from a Baton that did not hand it over, this one's.
                steering.join(socket.fd, listener)
            }
        }
        sharedInstead = Set(handover.sharedInstead)
    }
}
