/// How a worker learns which of its descriptors are its sockets. Whatever the
/// protocol, the sockets are at fd 3, 4, … in listener order, and `{fd:NAME}` in the
/// command is replaced with the descriptor number of listener NAME.
public enum SocketProtocol: String, Sendable, Equatable, CaseIterable, Codable {
    /// systemd socket activation: `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`.
    case systemd
    /// einhorn's: `EINHORN_FD_COUNT`, `EINHORN_FD_0`, …, `EINHORN_MASTER_PID`.
    case einhorn
    /// Server::Starter's: `SERVER_STARTER_PORT=host:port=fd;…`, `SERVER_STARTER_GENERATION`.
    case serverStarter = "server-starter"
    /// For servers that bind their own port: `LD_PRELOAD` of Baton's preload library,
    /// which turns a `bind()` to a listener's address into the inherited socket.
    case preload
    /// Nothing but the descriptors (and `{fd:NAME}` in the command).
    case none

    static let choices = allCases.map(\.rawValue).joined(separator: ", ")
}
