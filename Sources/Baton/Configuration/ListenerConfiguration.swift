/// One named socket the service exposes.
public struct ListenerConfiguration: Sendable, Equatable, Codable {
    var name: String
    var address: ListenerAddress
    var reusePort: ReusePortMode
    /// `listen()` backlog; nil takes `net.core.somaxconn`.
    var backlog: Int32?
    /// File mode of a unix socket's path.
    var socketMode: UInt32?
    /// What to do at start when another process serves the address; nil refuses.
    var addressInUse: AddressInUse?
    /// UDP only: how datagrams of an existing flow are steered; nil is `none`. Optional
    /// fields, so that a handover from a Baton without them still decodes.
    var flowMode: Flows?
    /// How long a flow without a datagram is kept; nil takes the default.
    var flowIdleTimeout: Duration?
    /// How many flows the flow table holds; nil takes the default.
    var flowTableSize: Int?

    var flows: Flows { flowMode ?? .none }

    init(
        name: String, address: ListenerAddress, reusePort: ReusePortMode? = nil,
        backlog: Int32? = nil, socketMode: UInt32? = nil
    ) {
        self.name = name
        self.address = address
        self.reusePort = reusePort ?? (address.supportsReusePort ? .perWorker : .shared)
        self.backlog = backlog
        self.socketMode = socketMode
    }
}
