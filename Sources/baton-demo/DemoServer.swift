import BatonWorker
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// The listening socket, every open connection, and the drain: stop accepting, finish
/// in-flight requests, close keep-alive connections without racing their clients, exit.
///
/// The demo accepts connections with BatonWorker's ``ConnectionAcceptor`` and hands each
/// one to SwiftNIO. A listening socket run by Baton is shared with the other generation
/// in the same slot, so a wake-up often finds the queue already emptied by the sibling;
/// NIO's own accept loop asserts in debug builds when that happens (`BaseSocketChannel`,
/// "readResult == .some").
final class DemoServer: @unchecked Sendable {
    let eventLoop: EventLoop
    let address: String
    private let options: Options
    private let listener: Int32
    private let identity: Identity
    /// Set once before accepting starts.
    private var acceptor: ConnectionAcceptor?
    private var bootstrap: ClientBootstrap?
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
        if let inherited = try BatonWorker.inheritedListeners() {
            // The one named `http`, else the first. NIO-style adoption would call
            // listen(128) on the socket Baton holds; we leave its backlog as Baton set it.
            listener = (try? inherited.descriptor(named: "http")) ?? inherited.entries[0].descriptor
            address = "fd \(listener)"
        } else {
            let text = options.listen ?? "127.0.0.1:8080"
            do {
                listener = try ListeningSocket.bind(ListenAddress(parsing: text), reusePort: options.reusePort)
            } catch {
                throw DemoError("--listen \(text): \(error)")
            }
            address = text
        }
        try ListeningSocket.makeNonBlocking(listener)
        let server = DemoServer(eventLoop: eventLoop, listener: listener, address: address, identity: identity, options: options)
        server.bootstrap = server.makeBootstrap()
        let acceptPause = options.acceptPauseMilliseconds
        let acceptor = ConnectionAcceptor(listener: listener, label: "baton-demo.accept") { connection in
            // On the acceptor's queue: the next accept waits for this.
            if acceptPause > 0 { usleep(acceptPause * 1000) }
            // Counted before the drain can see it: its handler is added only once NIO has
            // registered the channel, and a drain that ended meanwhile would reset it.
            eventLoop.execute { server.registering += 1 }
            server.bootstrap?.withConnectedSocket(connection).whenComplete { result in
                if case .failure(let error) = result { log("cannot serve a connection: \(error)") }
                eventLoop.execute {
                    server.registering -= 1
                    server.exitIfDone()
                }
            }
        }
        server.acceptor = acceptor
        acceptor.start()
        return server
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
                if options.rudeDrain {
                    log("drain signal: exiting at once (--rude-drain)")
                    _exit(0)
                }
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
        BatonWorker.notifier.stopping()
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
        guard let pause else {
            acceptor?.stop { [self] in eventLoop.execute { self.acceptingStopped() } }
            return
        }
        // A second reference keeps the socket, and its queue, open while nobody accepts.
        let kept = fcntl(listener, F_DUPFD_CLOEXEC, 0)
        acceptor?.stop { [self] in
            eventLoop.scheduleTask(in: .milliseconds(pause)) {
                close(kept)
                self.acceptingStopped()
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

    /// Accepted connections whose channel is not registered yet. Touched on the event loop only.
    private var registering = 0

    private func exitIfDone() {
        guard draining, !accepting, connections.isEmpty, registering == 0 else { return }
        log("drained; exiting")
        exit(0)
    }
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
