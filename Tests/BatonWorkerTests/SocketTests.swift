import BatonWorker
import Glibc
import NIOCore
import NIOPosix
import Testing

/// The parts that make system calls, on loopback and in a scratch directory.
@Suite struct SocketTests {
    /// The backlog of a listening TCP socket, from TCP_INFO.
    func backlog(_ fd: Int32) -> UInt32 {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 else { return 0 }
        return info.tcpi_sacked
    }

    @Test func standaloneBindListensWithTheLargestBacklog() throws {
        let fd = try ListeningSocket.bind(.tcp(host: "127.0.0.1", port: 0))
        defer { close(fd) }
        #expect(backlog(fd) == UInt32(ListeningSocket.maximumBacklog))
        #expect(ListeningSocket.isTCP(fd))
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
        try ListeningSocket.adopt(fd, name: "http")
    }

    @Test func adoptRejectsWhatIsNotAListeningSocket() throws {
        #expect(throws: BatonWorkerError.self) { try ListeningSocket.adopt(987, name: "http") }
        let unbound = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(unbound) }
        do {
            try ListeningSocket.adopt(unbound, name: "http")
            Issue.record("a socket that does not listen was adopted")
        } catch {
            #expect(error.code == .badDescriptor)
            #expect(error.description.contains("not listening"))
        }
    }

    @Test func bindingAnAddressInUseSaysWhich() throws {
        let first = try ListeningSocket.bind(.tcp(host: "127.0.0.1", port: 0))
        defer { close(first) }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(first, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        #expect {
            _ = try ListeningSocket.bind(.tcp(host: "127.0.0.1", port: port))
        } throws: { error in
            "\(error)".contains("bind() to 127.0.0.1:\(port) failed") && "\(error)".contains("errno \(EADDRINUSE)")
        }
    }

    @Test func serverBootstrapAdoptionPutsTheBacklogBack() async throws {
        let fd = try ListeningSocket.bind(.tcp(host: "127.0.0.1", port: 0), backlog: 77)
        #expect(backlog(fd) == 77)
        let listener = Listener(name: "http", descriptor: fd, origin: .inherited(.systemdNamed))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .withBoundSocket(listener, backlog: 1000)
            .get()
        #expect(backlog(fd) == 1000)
        try await channel.close()
    }

    @Test func asyncServerBootstrapAdoptionPutsTheBacklogBack() async throws {
        let fd = try ListeningSocket.bind(.tcp(host: "127.0.0.1", port: 0), backlog: 77)
        let listener = Listener(name: "http", descriptor: fd, origin: .inherited(.systemdNamed))
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(listener, backlog: 900) { channel in channel.eventLoop.makeSucceededFuture(channel) }
        #expect(backlog(fd) == 900)
        try await server.channel.close()
    }

    @Test func notifierSendsOneDatagramToNotifySocket() throws {
        let path = "/tmp/baton-worker-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let receiver = try ListeningSocket.datagramForTest(path)
        defer {
            close(receiver)
            unlink(path)
        }
        let notifier = ServiceNotifier(environment: ["NOTIFY_SOCKET": path])
        #expect(notifier.ready(status: "serving"))
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = recv(receiver, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        #expect(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self) == "READY=1\nSTATUS=serving")
    }

    /// Repeated: `stop`'s completion must come after the close, not race it.
    @Test(arguments: 1...50)
    func acceptorHandsOverConnectionsAndClosesItsDescriptorOnStop(_ attempt: Int) async throws {
        let fd = try ListeningSocket.bind(.tcp(host: "127.0.0.1", port: 0))
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let (accepted, continuation) = AsyncStream<Int32>.makeStream()
        let acceptor = ConnectionAcceptor(listener: fd) { continuation.yield($0) }
        acceptor.start()
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) }
        }
        #expect(connected == 0)
        var iterator = accepted.makeAsyncIterator()
        let connection = try #require(await iterator.next())
        #expect(connection >= 0)
        close(connection)
        await acceptor.stop()
        // It held the only reference: with it closed, nothing listens on the port.
        let late = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(late) }
        let refused = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(late, $0, length) }
        }
        #expect(refused == -1 && errno == ECONNREFUSED, "the acceptor closes its descriptor of the listening socket")
    }
}

extension ListeningSocket {
    /// A bound unix datagram socket, standing in for the supervisor's notify socket.
    static func datagramForTest(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw BatonWorkerError(.systemCall, "cannot bind \(path)") }
        return fd
    }
}

/// A standalone worker binding a unix path replaces only a socket left over from a crash.
@Suite struct UnixListenerTests {
    let path = "/tmp/baton-worker-unix-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"

    @Test func aStaleSocketFileIsReplaced() throws {
        let first = try ListeningSocket.bind(.unix(path: path))
        close(first)
        let second = try ListeningSocket.bind(.unix(path: path))
        close(second)
        unlink(path)
    }

    @Test func aSocketSomeoneListensOnIsNotStolen() throws {
        let first = try ListeningSocket.bind(.unix(path: path))
        defer {
            close(first)
            unlink(path)
        }
        #expect {
            _ = try ListeningSocket.bind(.unix(path: path))
        } throws: { error in
            "\(error)".contains("another process listens on it")
        }
    }

    @Test func aFileThatIsNotASocketIsLeftAlone() throws {
        let file = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        #expect(file >= 0)
        close(file)
        defer { unlink(path) }
        #expect(throws: BatonWorkerError.self) { _ = try ListeningSocket.bind(.unix(path: path)) }
        #expect(access(path, F_OK) == 0, "the file is still there")
    }
}
