/// What `batonctl status` and `/metrics` show of the sockets.
extension SocketTable {
    /// The sockets of `listeners` for `batonctl status`, with each TCP socket's accept queue.
    func status(of listeners: [ListenerConfiguration]) -> [StatusReport.ListenerStatus] {
        listeners.map { listener in
            let keys = descriptors.keys.filter { $0.name == listener.name && $0.address == listener.address }
                .sorted { ($0.generation ?? 0, $0.slot ?? -1) < ($1.generation ?? 0, $1.slot ?? -1) }
            return StatusReport.ListenerStatus(
                name: listener.name, address: "\(listener.address)", reusePort: listener.reusePort,
                sockets: keys.map { key in
                    var socket = StatusReport.SocketStatus(slot: key.slot)
                    socket.generation = key.generation
                    if isSteered(listener), let fd = descriptors[key] {
                        socket.inRotation = steering.isInRotation(fd, at: key.address)
                        socket.steered = steering.selections(of: fd, at: key.address)
                    }
                    if case .tcp = key.address, let fd = descriptors[key], let queue = ListenerSocket.acceptQueue(fd) {
                        socket.queued = queue.depth
                        socket.backlog = queue.capacity
                    }
                    return socket
                })
        }
    }
}
