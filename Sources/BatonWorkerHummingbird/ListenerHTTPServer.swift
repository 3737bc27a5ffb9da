import BatonWorker
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Hummingbird's HTTP/1.1 served on a BatonWorker `Listener`: Hummingbird's own server
/// binds an address (`BindAddress`), never a descriptor it was given. Run it with
/// `BatonWorker.run(services:logger:)`; it says `READY=1` once it accepts.
///
/// It accepts with BatonWorker's `ConnectionAcceptor` (the socket is shared with the
/// other generation of the slot) and runs each connection through Hummingbird's
/// `HTTP1Channel`. On graceful shutdown (the drain) it stops accepting at once, and every
/// connection finishes its request in flight; see `KeepAliveDrainHandler` for keep-alive
/// connections. `run()` returns once the last connection is closed.
public struct ListenerHTTPServer<Responder: HTTPResponder>: Service
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    public let listener: Listener
    public let responder: Responder
    public let logger: Logger
    public var eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    /// During the drain, a keep-alive connection idle this long is closed.
    public var drainIdleTimeout: TimeAmount = .seconds(1)

    public init(listener: Listener, responder: Responder, logger: Logger) {
        self.listener = listener
        self.responder = responder
        self.logger = logger
    }

    /// Serves `router`'s responder.
    public init<Router: HTTPResponderBuilder>(listener: Listener, router: Router, logger: Logger)
    where Router.Responder == Responder {
        self.init(listener: listener, responder: router.buildResponder(), logger: logger)
    }

    public func run() async throws {
        let connections = OpenConnections()
        let channelSetup = HTTP1Channel(
            responder: { [responder, logger] request, responseWriter, channel in
                let context = Responder.Context(source: .init(channel: channel, logger: logger))
                let response: Response
                do {
                    response = try await responder.respond(to: request, context: context)
                } catch {
                    logger.debug("request failed: \(error)")
                    response = Response(status: .internalServerError)
                }
                try await responseWriter.write(response: response.head, body: response.body)
            },
            configuration: .init(additionalChannelHandlers: [KeepAliveDrainHandler(idleTimeout: drainIdleTimeout)])
        )
        let isTCP = ListeningSocket.isTCP(listener.descriptor)
        try ListeningSocket.makeNonBlocking(listener.descriptor)
        let (accepted, acceptedContinuation) = AsyncStream<Int32>.makeStream()
        let acceptor = ConnectionAcceptor(listener: listener.descriptor) { acceptedContinuation.yield($0) }
        acceptor.start()
        BatonWorker.notifier.ready(status: "serving on \(listener)")
        logger.notice("serving on \(listener)")

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await descriptor in accepted {
                    group.addTask { [eventLoopGroup, logger] in
                        do {
                            var bootstrap = ClientBootstrap(group: eventLoopGroup)
                            if isTCP { bootstrap = bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1) }
                            let channel = try await bootstrap.withConnectedSocket(descriptor) { channel in
                                channelSetup.setup(channel: channel, logger: logger).map { value in
                                    connections.opened(channel)
                                    return value
                                }
                            }
                            await channelSetup.handle(value: channel, logger: logger)
                        } catch {
                            logger.error("cannot serve a connection: \(error)")
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            acceptor.stop { acceptedContinuation.finish() }
            connections.drain()
        }
        await acceptor.stop()  // already stopped, unless the task was cancelled instead
        logger.notice("drained")
    }
}
