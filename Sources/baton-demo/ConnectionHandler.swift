import NIOCore
import NIOHTTP1

/// One HTTP/1.1 connection. During a drain it answers the next request with
/// `Connection: close`, and closes the connection when it has been idle for the
/// drain's idle timeout: closing it the moment it goes idle would race the client's
/// next request, which then fails.
final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private unowned let server: DemoServer
    private let identity: Identity
    private let body: String
    private var context: ChannelHandlerContext?
    private var requestsInFlight = 0
    private var keepAlive = true
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?

    init(server: DemoServer, identity: Identity) {
        self.server = server
        self.identity = identity
        body = "pid=\(identity.pid) generation=\(identity.generation) slot=\(identity.slot)\n"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if server.draining { drainStarted() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        requestsInFlight += 1
        lastActivity = .now()
        keepAlive = head.isKeepAlive
        let delay = Self.sleepMilliseconds(head.uri)
        if delay > 0 {
            context.eventLoop.scheduleTask(in: .milliseconds(delay)) { [self] in respond(version: head.version) }
        } else {
            respond(version: head.version)
        }
    }

    private func respond(version: HTTPVersion) {
        guard let context else { return }
        let close = !keepAlive || server.draining
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "X-Pid", value: "\(identity.pid)")
        headers.add(name: "X-Generation", value: identity.generation)
        headers.add(name: "X-Slot", value: identity.slot)
        if let version = identity.version { headers.add(name: "X-Version", value: version) }
        if close { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        requestsInFlight -= 1
        lastActivity = .now()
        if close {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else if server.draining {
            scheduleIdleCheck()
        }
    }

    /// Called on every open connection when the drain begins.
    func drainStarted() {
        scheduleIdleCheck()
    }

    private func scheduleIdleCheck() {
        guard let context, requestsInFlight == 0 else { return }
        idleCheck?.cancel()
        let deadline = lastActivity + server.idleTimeout
        idleCheck = context.eventLoop.scheduleTask(deadline: deadline) { [self] in
            guard let context = self.context, requestsInFlight == 0 else { return }
            if NIODeadline.now() >= lastActivity + server.idleTimeout {
                context.close(promise: nil)
            } else {
                scheduleIdleCheck()
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// `N` from `/sleep?ms=N`, or 0.
    private static func sleepMilliseconds(_ uri: String) -> Int64 {
        guard uri.hasPrefix("/sleep?"), let equals = uri.firstIndex(of: "=") else { return 0 }
        return Int64(uri[uri.index(after: equals)...].prefix { $0.isNumber }) ?? 0
    }
}
