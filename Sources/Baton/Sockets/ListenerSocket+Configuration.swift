import CBatonShim
import Glibc

extension ListenerSocket {
    /// The socket Baton holds for the whole life of `listener`. TCP and UDP sockets get
    /// `SO_REUSEPORT` even when shared: a reload that switches the listener to per-worker
    /// then opens its new sockets beside the old one instead of closing it. `[::]` means
    /// IPv6 only; a second listener takes 0.0.0.0 if both are wanted.
    static func open(_ listener: ListenerConfiguration, backlog: Int32) throws(SystemError) -> Int32 {
        try open(
            listener.address, backlog: backlog, reusePort: true, ipv6Only: true, unixMode: listener.socketMode,
            subject: "listener \(listener.name) \(listener.address)")
    }

    /// The accept queue's current length and limit, for a TCP listening socket.
    static func acceptQueue(_ fd: Int32) -> (depth: UInt32, capacity: UInt32)? {
        var depth: UInt32 = 0
        var capacity: UInt32 = 0
        guard baton_accept_queue(fd, &depth, &capacity) == 0 else { return nil }
        return (depth, capacity)
    }

    /// Whether a datagram waits in the socket, without taking it.
    static func hasPendingDatagram(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) >= 0
    }
}
