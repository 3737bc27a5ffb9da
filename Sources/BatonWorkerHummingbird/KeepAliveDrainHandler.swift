import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Drains one HTTP/1.1 connection without losing a request: once the drain begins, the
/// next response says `Connection: close` and the connection closes after it; a
/// connection idle for `idleTimeout` is closed.
///
/// Hummingbird's own quiescing closes an idle keep-alive connection at once, which races
/// a client sending its next request at that moment: that request is lost.
final class KeepAliveDrainHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Fired through the pipeline to start the drain.
    struct DrainEvent: Sendable {}

    private let idleTimeout: TimeAmount
    private var draining = false
    private var requestsInFlight = 0
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?

    init(idleTimeout: TimeAmount) {
        self.idleTimeout = idleTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            requestsInFlight += 1
            idleCheck?.cancel()
            idleCheck = nil
        }
        lastActivity = .now()
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where draining && head.status.kind != .informational:
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where draining:
            requestsInFlight -= 1
            lastActivity = .now()
            let written = context.writeAndFlush(data)
            written.cascade(to: promise)
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case .end:
            requestsInFlight -= 1
            lastActivity = .now()
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is DrainEvent else { return context.fireUserInboundEventTriggered(event) }
        guard !draining else { return }
        draining = true
        scheduleIdleCheck(context: context)
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext) {
        guard requestsInFlight == 0 else { return }  // the response will close the connection
        idleCheck?.cancel()
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastActivity + idleTimeout) { [self] in
            idleCheck = nil
            guard requestsInFlight == 0, context.channel.isActive else { return }
            if NIODeadline.now() >= lastActivity + idleTimeout {
                context.close(promise: nil)
            } else {
                scheduleIdleCheck(context: context)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
    }
}
