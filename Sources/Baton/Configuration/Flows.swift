/// How the steering program sends the datagrams of an existing flow of a UDP listener
/// (`listener.flows`, Docs/steering.md).
public enum Flows: String, Sendable, Equatable, CaseIterable, Codable {
    /// Every datagram goes to the serving generation: right for request/response
    /// protocols such as DNS.
    case none
    /// A flow (remote address and port) stays with the socket its first datagram went to
    /// while that socket is open.
    case tuple
    /// As `tuple`, and a QUIC packet whose destination connection ID carries a socket's
    /// cookie goes to that socket while it is open.
    case quic
}
