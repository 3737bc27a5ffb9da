import CSystemd
import Dispatch
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// The listening socket, every open connection, and the drain: stop accepting, finish
/// in-flight requests, close keep-alive connections without racing their clients, exit.
///
/// The demo accepts connections itself and hands each one to SwiftNIO. A listening
/// socket run by Baton is shared with the other generation in the same slot, so a
/// wake-up often finds the queue already emptied by the sibling; NIO's own accept loop
/// asserts in debug builds when that happens (`BaseSocketChannel`, "readResult == .some").
final class DemoServer: @unchecked Sendable {
    let eventLoop: EventLoop
    let address: String
    private let options: Options
    private let listener: Int32
    private let identity: Identity
    /// Set once before accepting starts; read on `acceptQueue`.
    private var bootstrap: ClientBootstrap?
    // Accepting state, on `acceptQueue` only.
    private let acceptQueue = DispatchQueue(label: "baton-demo.accept")
    private var acceptSource: DispatchSourceRead?
    // Connection state, on `eventLoop` only.
    private var connections: [ObjectIdentifier: ConnectionHandler] = [:]
    private(set) var draining = false
    private var accepting = true

    private init(eventLoop: EventLoop, listener: Int32, address: String, identity: Identity, options: Options) {
        self.eventLoop = eventLoop
        self.listener = listener
        self.address = address
        self.options = options
        self.identity = identity
    }

    /// Hands accepted connections to SwiftNIO, each with the HTTP/1.1 pipeline.
    private func makeBootstrap() -> ClientBootstrap {
        var bootstrap = ClientBootstrap(group: eventLoop)
        if ListeningSocket.isTCP(listener) {
            bootstrap = bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
        }
        return bootstrap.channelInitializer { [self] channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = ConnectionHandler(server: self, identity: identity)
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(handler)
                connections[ObjectIdentifier(handler)] = handler
                channel.closeFuture.whenComplete { _ in self.connectionClosed(handler) }
            }
        }
    }

    static func start(options: Options, identity: Identity, on eventLoop: EventLoop) throws -> DemoServer {
        let listener: Int32
        let address: String
        if let inherited = InheritedSocket.fromEnvironment() {
            listener = inherited
            address = "fd \(inherited)"
            // NIO-style adoption would call listen(128) on the socket Baton holds; we
            // leave its backlog as Baton configured it.
        } else {
            address = options.listen ?? "127.0.0.1:8080"
            listener = try ListeningSocket.bind(address, reusePort: options.reusePort)
        }
        guard fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK) == 0 else {
            throw DemoError("cannot make the listening socket non-blocking: errno \(errno)")
        }
        let server = DemoServer(eventLoop: eventLoop, listener: listener, address: address, identity: identity, options: options)
        server.bootstrap = server.makeBootstrap()
        server.startAccepting()
        return server
    }

    private func startAccepting() {
        let source = DispatchSource.makeReadSource(fileDescriptor: listener, queue: acceptQueue)
        source.setEventHandler { [unowned self] in acceptPending() }
        source.setCancelHandler { [listener] in close(listener) }
        acceptSource = source
        source.resume()
    }

    /// Accepts what is queued now. Finding the queue empty is normal: the other
    /// generation on the same socket may have taken the connection.
    private func acceptPending() {
        for _ in 0..<64 {
            let connection = accept(listener, nil, nil)  // NIO makes it non-blocking
            if connection >= 0, let bootstrap {
                bootstrap.withConnectedSocket(connection).whenFailure { error in
                    log("cannot serve a connection: \(error)")
                }
                continue
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN: return
            default:
                log("accept failed: errno \(errno)")
                return
            }
        }
    }

    static func blockSignals(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Drains whenever one of `signals` (blocked with ``blockSignals(_:)``) arrives;
    /// never returns (the drain ends the process). Run it on the main thread, instead of
    /// `dispatchMain()`, which would unblock the signals on that thread.
    func drainOnSignals(_ signals: [Int32]) -> Never {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        var received: Int32 = 0
        while true {
            if sigwait(&set, &received) == 0 {
                eventLoop.execute { self.drain() }
            }
        }
    }

    /// Starts the drain; idempotent.
    func drain() {
        eventLoop.preconditionInEventLoop()
        guard !draining else { return }
        draining = true
        log("draining: \(connections.count) connection(s) open")
        _ = sd_notify(0, "STOPPING=1")
        stopAccepting(after: options.drainPauseMilliseconds)
        for connection in connections.values {
            connection.drainStarted()
        }
    }

    /// Stops accepting and closes our descriptor of the listening socket: a plain
    /// close() of one reference, while the socket and its queue live on in Baton and in
    /// the next generation. With a pause, connections first keep queuing on a socket
    /// nobody accepts from: the naive reload the benchmark compares against, where
    /// closing the last reference resets them.
    private func stopAccepting(after pause: Int64?) {
        acceptQueue.async { [self] in
            guard let source = acceptSource else { return }
            guard let pause else {
                source.cancel()
                acceptSource = nil
                eventLoop.execute { self.acceptingStopped() }
                return
            }
            source.suspend()
            acceptQueue.asyncAfter(deadline: .now() + .milliseconds(Int(pause))) { [self] in
                acceptSource?.cancel()
                acceptSource?.resume()
                acceptSource = nil
                eventLoop.execute { self.acceptingStopped() }
            }
        }
    }

    private func acceptingStopped() {
        accepting = false
        exitIfDone()
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

/// Inherited listening sockets, as far as the demo needs them.
enum InheritedSocket {
    /// The descriptor named `http`, else the first one, from `LISTEN_FDS` (systemd's
    /// protocol, Baton's default) or `SERVER_STARTER_PORT` (Server::Starter's:
    /// `host:port=fd;…`); nil when neither is there for us.
    static func fromEnvironment() -> Int32? {
        if let starter = Identity.variable("SERVER_STARTER_PORT"),
           let first = starter.split(separator: ";").first, let equals = first.lastIndex(of: "="),
           let fd = Int32(first[first.index(after: equals)...]) {
            return fd
        }
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
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
