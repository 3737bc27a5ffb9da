import Glibc
import NIOCore
import NIOExtras
import NIOPosix

/// Listens on the control socket (mode 0600) and hands every well-formed request to
/// the supervisor. A malformed or unknown request is answered here with an error and
/// never reaches the supervisor.
final class ControlServer: Sendable {
    private let channel: Channel
    let path: String

    /// Binds the socket; call it from a thread other than `eventLoop`'s.
    init(path: String, eventLoop: EventLoop, submit: @escaping @Sendable (ControlRequest, ControlResponder) -> Void) throws {
        if UnixAddress.isListening(path) {
            throw SystemError("bind", errno: EADDRINUSE,
                              subject: "control socket \(path) (another Baton is running there)")
        }
        unlink(path)
        let previousMask = umask(0o177)
        defer { umask(previousMask) }
        do {
            channel = try ServerBootstrap(group: eventLoop)
                .serverChannelOption(.backlog, value: 64)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ControlConnectionHandler(submit: submit))
                    }
                }
                .bind(unixDomainSocketPath: path)
                .wait()
        } catch {
            throw SystemError("bind", errno: (error as? IOError)?.errnoCode ?? EIO, subject: "control socket \(path)")
        }
        chmod(path, 0o600)
        self.path = path
    }

    /// Closes the socket and removes its file; call it from a thread other than the event loop's.
    func close() {
        try? channel.close().wait()
        unlink(path)
    }
}

/// Writes the answer to one control request.
public struct ControlResponder: Sendable {
    let channel: Channel

    /// Sends one reply; after the final one, closes the connection and then runs
    /// `afterwards` on the event loop.
    public func send(_ reply: ControlReply, afterwards: (@Sendable () -> Void)? = nil) {
        let write = channel.writeAndFlush(ByteBuffer(string: reply.encodedLine()))
        if reply.final {
            let channel = self.channel
            write.whenComplete { _ in
                channel.close(promise: nil)
                afterwards?()
            }
        }
    }
}

private final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let submit: @Sendable (ControlRequest, ControlResponder) -> Void
    private var answered = false

    init(submit: @escaping @Sendable (ControlRequest, ControlResponder) -> Void) {
        self.submit = submit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One request per connection; anything after it is ignored.
        guard !answered else { return }
        answered = true
        let responder = ControlResponder(channel: context.channel)
        switch ControlRequest.decode(String(buffer: unwrapInboundIn(data))) {
        case .success(let request):
            submit(request, responder)
        case .failure(let error):
            responder.send(.failure(error.description))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
