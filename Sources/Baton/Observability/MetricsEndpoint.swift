import BatonCore
import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Baton's own `/metrics` (the `metrics` setting): an HTTP/1.1 server on the supervisor's
/// event loop, off until an address is given, and moved when a reload that takes over
/// gives another. It answers `GET /metrics` with ``PrometheusText`` of the status,
/// `GET /ready` with 200 or 503 as the supervisor is ready or not, and 404 elsewhere.
///
/// On the event loop, as everything of the supervisor: no thread of its own, and no
/// timer unless a scraper is connected. Its state is touched on the event loop only.
///
/// No client can grow Baton or lock scrapers out (Docs/security.md, "/metrics"): at
/// most ``connectionLimit`` connections are open, and a new one closes the oldest that
/// is waiting for a request; a request must be complete within ``requestTimeout``; one
/// answer at a time is written, the next only once the kernel has taken the last, and
/// an answer the client does not read within ``writeTimeout`` closes the connection;
/// at most ``pipelineLimit`` requests wait behind it, and nothing more is read until
/// they are answered.
public final class MetricsEndpoint: @unchecked Sendable {
    /// The connections open at once: a scraper needs one, and the limit keeps a flood
    /// from growing Baton.
    static let connectionLimit = 16
    /// How long a connection may take to send a whole request, from when it opened or
    /// its last answer was written: trickling bytes does not hold a connection longer.
    /// Longer than Prometheus' usual 15 s interval, so that its keep-alive connection
    /// lasts from scrape to scrape.
    static let requestTimeout = TimeAmount.seconds(30)
    /// How long the kernel may take to accept an answer (the client reads it) before the
    /// connection is closed.
    static let writeTimeout = TimeAmount.seconds(10)
    /// Requests received and not yet answered on one connection; one more closes it.
    static let pipelineLimit = 8

    private let eventLoop: EventLoop
    private let logger: Logger
    private let render: @Sendable () -> String
    private let ready: @Sendable () -> Bool
    private var server: Channel?
    /// The address asked for last, bound or being bound.
    private var address: ListenerAddress?
    private let connections: NIOLoopBoundBox<MetricsConnections>

    /// `render` and `ready` run on the event loop, for each request of theirs.
    init(eventLoop: EventLoop, logger: Logger, ready: @escaping @Sendable () -> Bool, render: @escaping @Sendable () -> String) {
        self.eventLoop = eventLoop
        self.logger = logger
        self.render = render
        self.ready = ready
        connections = .makeBoxSendingValue(MetricsConnections(), as: MetricsConnections.self, eventLoop: eventLoop)
    }

    /// Binds `address` (nothing for nil), or throws why it cannot; call it from a thread
    /// other than the event loop's.
    func start(_ address: ListenerAddress?) throws {
        guard let address else { return }
        let server = try eventLoop.flatSubmit { [self] in bind(address) }.wait()
        try eventLoop.submit { [self] in
            self.server = server
            self.address = address
        }.wait()
        logger.info("metrics at http://\(Self.authority(of: server) ?? "\(address)")/metrics")
    }

    /// Moves the endpoint to `address` (or closes it, for nil) if it is elsewhere. The
    /// old address keeps serving until the new one is bound; if that fails, it serves on
    /// and the error is logged. Call it on the event loop.
    func apply(_ address: ListenerAddress?) {
        eventLoop.assertInEventLoop()
        guard address != self.address else { return }
        self.address = address
        guard let address else {
            server?.close(promise: nil)
            server = nil
            logger.notice("metrics endpoint closed: the configuration has no metrics address any more")
            return
        }
        bind(address).whenComplete { [self] result in
            switch result {
            case .success(let bound):
                guard self.address == address else {
                    // Another reload asked for yet another address meanwhile.
                    bound.close(promise: nil)
                    return
                }
                server?.close(promise: nil)
                server = bound
                logger.notice("metrics moved to http://\(Self.authority(of: bound) ?? "\(address)")/metrics")
            case .failure(let error):
                guard self.address == address else { return }
                let serving = server.flatMap(Self.authority(of:)).map { "; it stays at \($0)" } ?? ""
                logger.error("metrics endpoint not moved: \(error)\(serving)")
            }
        }
    }

    /// Closes the endpoint; call it from a thread other than the event loop's.
    func close() {
        try? eventLoop.flatSubmit { [self] in
            let closing = server?.close() ?? eventLoop.makeSucceededVoidFuture()
            server = nil
            address = nil
            return closing
        }.wait()
    }

    private func bind(_ address: ListenerAddress) -> EventLoopFuture<Channel> {
        guard case .tcp(let host, let port) = address else {
            return eventLoop.makeFailedFuture(SystemError("bind", errno: EAFNOSUPPORT, subject: "metrics endpoint \(address) (tcp only)"))
        }
        let render = render
        let ready = ready
        let connections = connections
        return ServerBootstrap(group: eventLoop)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.value.admit(channel) else {
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.value.closed(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    try Self.addHandlers(to: channel.pipeline.syncOperations, render: render, ready: ready) { [connections] waiting in
                        connections.value.waiting(channel, waiting)
                    }
                }
            }
            .bind(host: host, port: Int(port))
            .flatMapErrorThrowing { error in
                throw SystemError(
                    "bind", errno: (error as? IOError)?.errnoCode ?? EADDRNOTAVAIL,
                    subject: "metrics endpoint \(address)")
            }
    }

    /// Makes a connection's pipeline read requests and answer them with `render`'s
    /// text; `waiting` hears whether the connection waits for a request (true) or
    /// has one to answer (false). Public for the fuzz target (baton-fuzz `metrics`).
    package static func addHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations,
        render: @escaping @Sendable () -> String,
        ready: @escaping @Sendable () -> Bool = { true },
        waiting: @escaping (Bool) -> Void = { _ in }
    ) throws {
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
        try pipeline.addHandler(MetricsRequestHandler(render: render, ready: ready, waiting: waiting))
    }

    private static func authority(of channel: Channel) -> String? {
        guard let address = channel.localAddress, let ip = address.ipAddress, let port = address.port else { return nil }
        return address.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

/// The endpoint's open connections, oldest first, and which of them wait for a request.
/// Touched on the event loop only.
struct MetricsConnections {
    private var open: [(channel: Channel, waiting: Bool)] = []

    /// Takes `channel` in, closing the oldest connection that waits for a request when
    /// the limit is reached; false (close `channel`) when every one is being answered.
    mutating func admit(_ channel: Channel) -> Bool {
        if open.count >= MetricsEndpoint.connectionLimit {
            guard let oldest = open.firstIndex(where: \.waiting) else { return false }
            open.remove(at: oldest).channel.close(promise: nil)
        }
        open.append((channel, true))
        return true
    }

    mutating func closed(_ channel: Channel) {
        open.removeAll { $0.channel === channel }
    }

    mutating func waiting(_ channel: Channel, _ waiting: Bool) {
        if let index = open.firstIndex(where: { $0.channel === channel }) { open[index].waiting = waiting }
    }
}

/// Answers the requests of one connection, in order and one at a time: `GET` (or
/// `HEAD`) `/metrics` with the text, `/ready` with 200 or 503, anything else with 404 or 405.
private final class MetricsRequestHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> String
    private let ready: @Sendable () -> Bool
    private let waiting: (Bool) -> Void
    /// The request being received.
    private var request: HTTPRequestHead?
    /// Requests received, waiting for the answer under way.
    private var unanswered: [HTTPRequestHead] = []
    /// An answer was written and the kernel has not taken all of it yet.
    private var writing = false
    /// A `read` held back while requests wait: asked for again once they are answered.
    private var readHeld = false
    /// Closes the connection when no whole request arrived in time.
    private var requestDeadline: Scheduled<Void>?
    private var writeDeadline: Scheduled<Void>?

    init(render: @escaping @Sendable () -> String, ready: @escaping @Sendable () -> Bool, waiting: @escaping (Bool) -> Void) {
        self.render = render
        self.ready = ready
        self.waiting = waiting
    }

    func handlerAdded(context: ChannelHandlerContext) {
        awaitRequest(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        requestDeadline?.cancel()
        writeDeadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let request else { return }
            self.request = nil
            guard unanswered.count < MetricsEndpoint.pipelineLimit else {
                // It sends faster than it reads: nothing it asks for is worth growing for.
                context.close(promise: nil)
                return
            }
            unanswered.append(request)
            requestDeadline?.cancel()
            requestDeadline = nil
            waiting(false)
            answerNext(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        guard unanswered.isEmpty && !writing else {
            readHeld = true
            return
        }
        context.read()
    }

    private func answerNext(context: ChannelHandlerContext) {
        guard !writing, context.channel.isActive else { return }
        guard !unanswered.isEmpty else {
            awaitRequest(context: context)
            if readHeld {
                readHeld = false
                context.read()
            }
            return
        }
        let request = unanswered.removeFirst()
        writing = true
        let channel = context.channel
        writeDeadline = context.eventLoop.scheduleTask(in: MetricsEndpoint.writeTimeout) {
            channel.close(promise: nil)
        }
        let written = respond(to: request, context: context)
        written.whenComplete { [self] result in
            writeDeadline?.cancel()
            writeDeadline = nil
            writing = false
            guard case .success = result, request.isKeepAlive else {
                channel.close(promise: nil)
                return
            }
            answerNext(context: context)
        }
    }

    /// Starts the time a connection has to send its next request.
    private func awaitRequest(context: ChannelHandlerContext) {
        waiting(true)
        requestDeadline?.cancel()
        let channel = context.channel
        requestDeadline = context.eventLoop.scheduleTask(in: MetricsEndpoint.requestTimeout) {
            channel.close(promise: nil)
        }
    }

    /// Writes the answer to `request`; the future completes once the kernel has it all.
    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let status: HTTPResponseStatus
        let body: String
        var headers = HTTPHeaders()
        if path != "/metrics" && path != "/ready" {
            (status, body) = (.notFound, "not found: Baton serves /metrics and /ready only\n")
        } else if request.method != .GET && request.method != .HEAD {
            (status, body) = (.methodNotAllowed, "use GET\n")
            headers.add(name: "Allow", value: "GET, HEAD")
        } else if path == "/ready" {
            (status, body) = ready() ? (.ok, "ready\n") : (.serviceUnavailable, "not ready: no generation serves, or Baton is stopping\n")
        } else {
            (status, body) = (.ok, render())
        }
        let buffer = context.channel.allocator.buffer(string: body)
        let metrics = status == .ok && path == "/metrics"
        headers.add(name: "Content-Type", value: metrics ? PrometheusText.contentType : "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(buffer.readableBytes)")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        return written.futureResult
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
