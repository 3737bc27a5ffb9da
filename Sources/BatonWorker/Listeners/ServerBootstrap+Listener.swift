import NIOCore
import NIOPosix

extension ServerBootstrap {
    /// Serves on `listener` (typically inherited from Baton or systemd) and puts back
    /// `backlog`: NIO's adoption of a socket calls `listen(128)`, which would shrink the
    /// backlog the supervisor configured on the socket it shares with every generation.
    ///
    /// NIO's own accept loop asserts in debug builds when a wake-up finds the queue empty,
    /// which happens on a socket shared with another process; see ``ConnectionAcceptor``.
    public func withBoundSocket(_ listener: Listener, backlog: Int32 = ListeningSocket.maximumBacklog) -> EventLoopFuture<any Channel> {
        serverChannelOption(.backlog, value: backlog)
            .withBoundSocket(listener.descriptor)
            .flatMapThrowing { channel in
                try ListeningSocket.setBacklog(listener.descriptor, backlog)
                return channel
            }
    }

    /// The structured-concurrency form of ``withBoundSocket(_:backlog:)``.
    public func bind<Output: Sendable>(
        _ listener: Listener,
        backlog: Int32 = ListeningSocket.maximumBacklog,
        serverBackPressureStrategy: NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark? = nil,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> NIOAsyncChannel<Output, Never> {
        let channel = try await serverChannelOption(.backlog, value: backlog)
            .bind(listener.descriptor, serverBackPressureStrategy: serverBackPressureStrategy, childChannelInitializer: childChannelInitializer)
        try ListeningSocket.setBacklog(listener.descriptor, backlog)
        return channel
    }
}
