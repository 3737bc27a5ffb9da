/// One named socket the service exposes.
public struct ListenerConfiguration: Sendable, Equatable, Codable {
    public var name: String
    public var address: ListenerAddress
    public var reusePort: ReusePortMode
    /// `listen()` backlog; nil takes `net.core.somaxconn`.
    public var backlog: Int32?
    /// File mode of a unix socket's path.
    public var socketMode: UInt32?
    /// What to do at start when another process serves the address; nil refuses.
    public var addressInUse: AddressInUse?

    public init(name: String, address: ListenerAddress, reusePort: ReusePortMode? = nil,
                backlog: Int32? = nil, socketMode: UInt32? = nil) {
        self.name = name
        self.address = address
        self.reusePort = reusePort ?? (address.supportsReusePort ? .perWorker : .shared)
        self.backlog = backlog
        self.socketMode = socketMode
    }
}
