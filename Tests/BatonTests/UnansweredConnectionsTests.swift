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

        /// `host`: 127.0.0.1, or ::1 for IPv6.
        init(host: String = "127.0.0.1") throws {
            let listener = try ListenerSocket.open(
                .tcp(host: host, port: 0), backlog: 16, reusePort: false, ipv6Only: false, subject: "test listener")
            var address = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
            }
            let client = socket(Int32(address.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
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

    /// The listeners of a generation are asked about in one request per address family,
    /// filtered by their ports: a connection on any of them counts, one on another port
    /// does not.
    @Test func everyListenersPortIsLookedAtAndNoOther() throws {
        let connections = try [Connection(), Connection(), Connection(host: "::1"), Connection(host: "::1"), Connection()]
        defer { connections.forEach { $0.close() } }
        let (looked, other) = (Array(connections.prefix(4)), connections[4])
        let listeners = looked.map(\.listener)
        func answer(_ connection: Connection) {
            connection.send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", from: connection.accepted)
            #expect(connection.receive(connection.client).hasPrefix("HTTP/1.1 200"))
        }
        for connection in connections {
            connection.send("GET / HTTP/1.1\r\n\r\n", from: connection.client)
        }
        #expect(try #require(UnansweredConnections(listeners: listeners), "sock_diag must answer").areHeld(by: getpid()) == true)
        // Answered on IPv4: still owed on IPv6.
        answer(looked[0])
        answer(looked[1])
        #expect(try #require(UnansweredConnections(listeners: Array(listeners.prefix(2)))).isEmpty)
        #expect(try #require(UnansweredConnections(listeners: listeners)).areHeld(by: getpid()) == true)
        // Answered on IPv6 too: nothing owed on the ports looked at, though `other` still is.
        answer(looked[2])
        answer(looked[3])
        #expect(try #require(UnansweredConnections(listeners: listeners)).isEmpty)
        #expect(try #require(UnansweredConnections(listeners: [other.listener])).areHeld(by: getpid()) == true)
    }

    /// Starts `bash -c script` as Baton starts a worker: `inherited` at descriptor 3,
    /// no other descriptor of this process's but 0 to 2. Returns its pid.
    func spawn(_ script: String, inheriting inherited: Int32? = nil) throws -> pid_t {
        try ProcessSpawner.spawn(
            .init(
                command: ["/bin/bash", "-c", script], environment: ["PATH": "/usr/bin:/bin"], directory: nil,
                sockets: inherited.map { [$0] } ?? []))
    }

    func end(_ pid: pid_t) {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// A worker that holds no socket but the ones Baton (here: this process) holds too,
    /// its listeners, holds no connection: nothing is owed, and the kernel is not asked.
    /// One that holds a socket of its own might owe something, and is asked about.
    @Test func aWorkerHoldingOnlyItsListenersHoldsNoConnection() throws {
        let connection = try Connection()
        defer { connection.close() }
        let listenerOnly = try spawn("exec sleep 60", inheriting: connection.listener)
        defer { end(listenerOnly) }
        // Its own connection, to the listener: accepted here once the shell holds it.
        let connecting = try spawn(
            "port=\(try port(of: connection.listener)); exec 3<>/dev/tcp/127.0.0.1/$port; echo connected >&3; exec sleep 60")
        defer { end(connecting) }
        let accepted = try acceptGreeted(on: connection.listener, saying: "connected")
        defer { Glibc.close(accepted) }
        #expect(UnansweredConnections.noneHeld(by: [listenerOnly]))
        #expect(!UnansweredConnections.noneHeld(by: [connecting]))
        #expect(!UnansweredConnections.noneHeld(by: [listenerOnly, connecting]))
        #expect(UnansweredConnections.noneHeld(by: [999_999_999]))
    }

    /// A server that forks its own workers from its main thread holds no connection
    /// itself: its children do, and they count as its own.
    @Test func aConnectionHeldByAWorkersChildCounts() throws {
        let connection = try Connection()
        defer { connection.close() }
        // bash forks the subshell from its only thread; the subshell connects and becomes
        // `sleep`, holding the connection, while bash holds no socket at all.
        let port = try port(of: connection.listener)
        let forking = try spawn("(exec 3<>/dev/tcp/127.0.0.1/\(port); echo connected >&3; exec sleep 60) & wait")
        defer { end(forking) }
        let accepted = try acceptGreeted(on: connection.listener, saying: "connected")
        defer { Glibc.close(accepted) }
        #expect(!UnansweredConnections.noneHeld(by: [forking]))
    }

    /// Accepts connections on `listener` until one sends `greeting`, and returns it: its
    /// client sends that once its socket is in place, so a look at the client's
    /// descriptors finds it. Any other connection is closed.
    func acceptGreeted(on listener: Int32, saying greeting: String) throws -> Int32 {
        while true {
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            try #require(poll(&ready, 1, 60_000) == 1, "no connection within 60 s")
            let accepted = Glibc.accept(listener, nil, nil)
            guard accepted >= 0 else { throw TestError("accept: \(errno)") }
            var said = pollfd(fd: accepted, events: Int16(POLLIN), revents: 0)
            var buffer = [UInt8](repeating: 0, count: 64)
            let count = poll(&said, 1, 60_000) == 1 ? buffer.withUnsafeMutableBytes { recv(accepted, $0.baseAddress, $0.count, 0) } : 0
            if count > 0, String(decoding: buffer.prefix(count), as: UTF8.self).hasPrefix(greeting) { return accepted }
            Glibc.close(accepted)
        }
    }

    func port(of listener: Int32) throws -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        guard named == 0 else { throw TestError("getsockname: \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }
}
