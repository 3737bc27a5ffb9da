import CSystemd
import Dispatch
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// The listening channel and every open connection, all on one event loop, and the
/// drain: stop accepting, finish in-flight requests, close keep-alive connections
/// without racing their clients, exit.
final class DemoServer: @unchecked Sendable {
    // Everything below is touched on `eventLoop` only.
    let eventLoop: EventLoop
    let address: String
    private let options: Options
    private var serverChannel: Channel?
    private var connections: [ObjectIdentifier: ConnectionHandler] = [:]
    private(set) var draining = false
    private var accepting = true
    private var signalSources: [DispatchSourceSignal] = []

    private init(eventLoop: EventLoop, address: String, options: Options) {
        self.eventLoop = eventLoop
        self.address = address
        self.options = options
    }

    static func start(options: Options, identity: Identity, on eventLoop: EventLoop) throws -> DemoServer {
        let inherited = InheritedSocket.fromEnvironment()
        let address = inherited.map { "fd \($0)" } ?? options.listen ?? "127.0.0.1:8080"
        let server = DemoServer(eventLoop: eventLoop, address: address, options: options)
        let bootstrap = ServerBootstrap(group: eventLoop)
            .serverChannelOption(.backlog, value: InheritedSocket.maximumBacklog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = ConnectionHandler(server: server, identity: identity)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    server.connections[ObjectIdentifier(handler)] = handler
                    channel.closeFuture.whenComplete { _ in server.connectionClosed(handler) }
                }
            }
        let channel: Channel
        if let fd = inherited {
            channel = try bootstrap.withBoundSocket(fd).wait()
            // Adopting calls listen(128) on the socket shared with Baton: restore the backlog.
            Glibc.listen(fd, InheritedSocket.maximumBacklog)
        } else {
            let (host, port) = try InheritedSocket.hostAndPort(address)
            channel = try bootstrap
                .serverChannelOption(ChannelOptions.socket(SocketOptionLevel(SOL_SOCKET), SO_REUSEPORT), value: options.reusePort ? 1 : 0)
                .bind(host: host, port: port).wait()
        }
        try eventLoop.submit { server.serverChannel = channel }.wait()
        return server
    }

    /// Drains when one of `signals` arrives. The sources are made here, in nonisolated
    /// code: a handler closure written in top-level code would be main-actor isolated and
    /// trap when Dispatch runs it on another thread.
    func drainOnSignals(_ signals: [Int32]) {
        for signalNumber in signals {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { self.eventLoop.execute { self.drain() } }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Starts the drain; idempotent.
    func drain() {
        eventLoop.preconditionInEventLoop()
        guard !draining else { return }
        draining = true
        log("draining: \(connections.count) connection(s) open")
        _ = sd_notify(0, "STOPPING=1")
        if let pause = options.drainPauseMilliseconds {
            // The naive reload of the benchmark: connections keep queuing in our own
            // socket while we do not accept, and closing it then resets them.
            serverChannel?.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            eventLoop.scheduleTask(in: .milliseconds(pause)) { self.stopAccepting() }
        } else {
            stopAccepting()
        }
        for connection in connections.values {
            connection.drainStarted()
        }
    }

    /// Closing our descriptor of the listening socket is a plain close(): the socket
    /// and its queue live on in Baton and in the next generation.
    private func stopAccepting() {
        guard accepting else { return }
        accepting = false
        serverChannel?.close().whenComplete { _ in self.exitIfDone() }
    }

    var idleTimeout: TimeAmount {
        .milliseconds(options.drainIdleMilliseconds)
    }

    private func connectionClosed(_ handler: ConnectionHandler) {
        connections[ObjectIdentifier(handler)] = nil
        exitIfDone()
    }

    private func exitIfDone() {
        guard draining, !accepting, connections.isEmpty else { return }
        log("drained; exiting")
        exit(0)
    }
}

/// The systemd socket-activation protocol, as far as the demo needs it.
enum InheritedSocket {
    /// The descriptor named `http`, else the first one; nil without `LISTEN_FDS` for us.
    static func fromEnvironment() -> Int32? {
        guard let count = Identity.variable("LISTEN_FDS").flatMap(Int32.init), count > 0,
              Identity.variable("LISTEN_PID").flatMap(pid_t.init) == getpid() else { return nil }
        let names = Identity.variable("LISTEN_FDNAMES")?.split(separator: ":", omittingEmptySubsequences: false) ?? []
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDNAMES")
        if let index = names.firstIndex(of: "http"), index < Int(count) {
            return 3 + Int32(index)
        }
        return 3
    }

    static let maximumBacklog: Int32 = {
        let fd = open("/proc/sys/net/core/somaxconn", O_RDONLY)
        guard fd >= 0 else { return 4096 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, buffer.count)
        return Int32(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self).filter(\.isNumber)) ?? 4096
    }()

    static func hostAndPort(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw DemoError("--listen \(text): expected HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
