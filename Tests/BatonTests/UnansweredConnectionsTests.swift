import BatonCore
import Glibc
import Testing

@testable import Baton

/// What a leaving worker still owes, read from the kernel: this test process plays the
/// worker, on a real listening socket on loopback.
@Suite struct UnansweredConnectionsTests {
    /// A listening socket on a port of the kernel's choosing, a client connected to it,
    /// and the connection accepted on the worker's side.
    struct Connection {
        let listener: Int32
        let client: Int32
        let accepted: Int32

        init() throws {
            let listener = try ListenerSocket.open(
                .tcp(host: "127.0.0.1", port: 0), backlog: 16, reusePort: false, ipv6Only: false, subject: "test listener")
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
            }
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) }
            }
            guard connected == 0 else { throw TestError("connect: \(errno)") }
            let accepted = accept(listener, nil, nil)
            guard accepted >= 0 else { throw TestError("accept: \(errno)") }
            self.listener = listener
            self.client = client
            self.accepted = accepted
        }

        func send(_ text: String, from fd: Int32) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        }

        /// Reads what `fd` has received, waiting for it.
        func receive(_ fd: Int32) -> String {
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self)
        }

        func close() {
            for fd in [client, accepted, listener] { Glibc.close(fd) }
        }
    }

    struct TestError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func unanswered(_ connection: Connection) throws -> UnansweredConnections {
        try #require(UnansweredConnections(listeners: [connection.listener]), "sock_diag must answer")
    }

    @Test func aRequestIsOwedFromArrivalUntilItIsAnswered() throws {
        let connection = try Connection()
        defer { connection.close() }
        connection.send("GET / HTTP/1.1\r\n\r\n", from: connection.client)
        // Received and not read yet, then read and not answered: owed either way.
        #expect(try unanswered(connection).areHeld(by: getpid()) == true)
        #expect(connection.receive(connection.accepted).hasPrefix("GET /"))
        #expect(try unanswered(connection).areHeld(by: getpid()) == true)
        connection.send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", from: connection.accepted)
        #expect(connection.receive(connection.client).hasPrefix("HTTP/1.1 200"))
        #expect(try unanswered(connection).isEmpty)
        #expect(try unanswered(connection).areHeld(by: getpid()) == false)
    }

    /// The next request on a connection answered once does not hold the drain: a keep-alive
    /// client always has one in flight, and it is the server's to finish as it drains.
    @Test func aKeepAliveConnectionAnsweredOnceIsNotOwed() throws {
        let connection = try Connection()
        defer { connection.close() }
        connection.send("GET / HTTP/1.1\r\n\r\n", from: connection.client)
        _ = connection.receive(connection.accepted)
        connection.send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", from: connection.accepted)
        _ = connection.receive(connection.client)
        connection.send("GET /next HTTP/1.1\r\n\r\n", from: connection.client)
        #expect(try unanswered(connection).areHeld(by: getpid()) == false)
    }

    /// Only the holder's connections count.
    @Test func aProcessThatIsGoneHoldsNone() throws {
        let connection = try Connection()
        defer { connection.close() }
        connection.send("GET / HTTP/1.1\r\n\r\n", from: connection.client)
        let unanswered = try unanswered(connection)
        #expect(unanswered.areHeld(by: getpid()) == true)
        #expect(unanswered.areHeld(by: 999_999_999) == false)
    }
}
