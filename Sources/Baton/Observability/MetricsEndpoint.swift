import BatonCore
import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Baton's own `/metrics` (the `metrics` setting): an HTTP/1.1 server on the supervisor's
/// event loop, off until an address is given, and moved when a reload that takes over
/// gives another. It answers `GET /metrics` with ``PrometheusText`` of the status, and
/// 404 elsewhere.
///
/// On the event loop, as everything of the supervisor: no thread of its own, and no
/// timer unless a scraper is connected. Its state is touched on the event loop only.
final class MetricsEndpoint: @unchecked Sendable {
    /// More connections than this are closed as soon as they are accepted: a scraper
    /// needs one, and the limit keeps a flood from growing Baton.
    static let connectionLimit = 16
    /// A connection that sends nothing for this long is closed, so that idle ones cannot
    /// hold the limit.
    static let idleTimeout = TimeAmount.seconds(30)

    private let eventLoop: EventLoop
    private let logger: Logger
    private let render: @Sendable () -> String
    private var server: Channel?
    /// The address asked for last, bound or being bound.
    private var address: ListenerAddress?
    private let connections: NIOLoopBoundBox<Int>

    /// `render` runs on the event loop, for each scrape.
    init(eventLoop: EventLoop, logger: Logger, render: @escaping @Sendable () -> String) {
        self.eventLoop = eventLoop
        self.logger = logger
        self.render = render
        connections = .makeBoxSendingValue(0, as: Int.self, eventLoop: eventLoop)
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
        let connections = connections
        return ServerBootstrap(group: eventLoop)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.value < Self.connectionLimit else {
                    return channel.close()
                }
                connections.value += 1
                channel.closeFuture.whenComplete { _ in connections.value -= 1 }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsRequestHandler(render: render))
                }
            }
            .bind(host: host, port: Int(port))
            .flatMapErrorThrowing { error in
                throw SystemError("bind", errno: (error as? IOError)?.errnoCode ?? EADDRNOTAVAIL,
                                  subject: "metrics endpoint \(address)")
            }
    }

    private static func authority(of channel: Channel) -> String? {
        guard let address = channel.localAddress, let ip = address.ipAddress, let port = address.port else { return nil }
        return address.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

/// Answers each request of one connection: `GET` (or `HEAD`) `/metrics` with the text,
/// anything else with 404 or 405.
private final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> String
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () -> String) {
        self.render = render
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
            respond(to: request, context: context)
        }
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let status: HTTPResponseStatus
        let body: String
        var headers = HTTPHeaders()
        if path != "/metrics" {
            (status, body) = (.notFound, "not found: Baton serves /metrics only\n")
        } else if request.method != .GET && request.method != .HEAD {
            (status, body) = (.methodNotAllowed, "use GET\n")
            headers.add(name: "Allow", value: "GET, HEAD")
        } else {
            (status, body) = (.ok, render())
        }
        let buffer = context.channel.allocator.buffer(string: body)
        headers.add(name: "Content-Type", value: status == .ok ? PrometheusText.contentType : "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(buffer.readableBytes)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        if !keepAlive {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
