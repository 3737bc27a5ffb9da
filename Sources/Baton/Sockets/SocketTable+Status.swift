/// What `batonctl status` and `/metrics` show of the sockets.
extension SocketTable {
    /// The sockets of `listeners` for `batonctl status`, with each TCP socket's accept queue.
    func status(of listeners: [ListenerConfiguration]) -> [StatusReport.ListenerStatus] {
        listeners.map { listener in
            let keys = descriptors.keys.filter { $0.name == listener.name && $0.address == listener.address }
                .sorted { ($0.generation ?? 0, $0.slot ?? -1) < ($1.generation ?? 0, $1.slot ?? -1) }
            // One pass over the flow table for all the listener's sockets.
            let group = isSteered(listener) && listener.flows != .none ? steering.group(at: listener.address) : nil
            let flows = group?.flows(of: keys.compactMap { descriptors[$0] })
            var status = StatusReport.ListenerStatus(
                name: listener.name, address: "\(listener.address)", reusePort: listener.reusePort,
                sockets: keys.map { key in
                    var socket = StatusReport.SocketStatus(slot: key.slot)
                    socket.generation = key.generation
                    if isSteered(listener), let fd = descriptors[key] {
                        socket.inRotation = steering.isInRotation(fd, at: key.address)
                        socket.steered = steering.selections(of: fd, at: key.address)
                        if let flows { socket.flows = flows[fd] ?? 0 }
                    }
                    if case .tcp = key.address, let fd = descriptors[key], let queue = ListenerSocket.acceptQueue(fd) {
                        socket.queued = queue.depth
                        socket.backlog = queue.capacity
                    }
                    return socket
                })
            if let group {
                status.flows = listener.flows.rawValue
                status.flowDecisions = group.decisions().map {
                    StatusReport.FlowDecisions(cookie: $0.cookie, flow: $0.flow, new: $0.new, fallback: $0.fallback)
                }
            }
            return status
        }
    }
}
