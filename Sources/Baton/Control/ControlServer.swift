import Glibc
import Logging
import NIOCore
import NIOExtras
import NIOPosix

/// Listens on the control socket (mode 0600, or as ``ControlAccess`` opens it to groups)
/// and hands every well-formed request its peer may make to the supervisor. A malformed
/// or unknown request, or one its peer may not make, is answered here with an error and
/// never reaches the supervisor.
///
/// Whoever connects cannot make Baton block, spin or run out of descriptors: at most
/// ``maximumConnections`` are open at once, fewer when the descriptor limit is low, so
/// that workers can still be started (a new one closes the oldest that has not sent
/// its request, or is refused when every one has), a connection that sends no request
/// within ``requestTimeout`` is closed, a request longer than ``maximumRequestLength``
/// gets an error and the connection is closed, and when `accept` fails (out of
/// descriptors) the server closes an idle connection and tries again only after a pause.
final class ControlServer: Sendable {
    static let maximumConnections = 16
    /// The connections open at once: ``maximumConnections``, or a quarter of the
    /// descriptor limit when that is fewer (at least 2).
    static var connectionLimit: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return maximumConnections }
        return max(2, min(maximumConnections, Int(clamping: limit.rlim_cur / 4)))
    }
    static let requestTimeout: TimeAmount = .seconds(10)
    static let maximumRequestLength = 64 * 1024
    /// How long the server waits before it accepts again after `accept` failed.
    static let acceptPause: TimeAmount = .milliseconds(100)

    private let channel: Channel
    let path: String

    /// Binds the socket; call it from a thread other than `eventLoop`'s.
    ///
    /// Only a stale socket (one nobody listens on) is replaced; any other file at `path`
    /// is an error naming it.
    init(
        path: String, eventLoop: EventLoop, access: ControlAccess = ControlAccess(), logger: Logger,
        submit: @escaping @Sendable (ControlRequest, ControlResponder) -> Void
    ) throws {
        let longest = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
        guard path.utf8.count <= longest else {
            throw SystemError(
                "bind", errno: ENAMETOOLONG,
                subject: "control socket \(path) (\(path.utf8.count) bytes; a unix socket path has at most \(longest))")
        }
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard existing.st_mode & S_IFMT == S_IFSOCK else {
                throw SystemError(
                    "bind", errno: EEXIST,
                    subject: "control socket \(path) (a file that is not a socket is there; Baton replaces only a stale socket)")
            }
            if UnixAddress.isListening(path) {
                throw SystemError(
                    "bind", errno: EADDRINUSE,
                    subject: "control socket \(path) (another Baton is running there)")
            }
            unlink(path)
        }
        let connections = ControlConnections(eventLoop: eventLoop)
        let previousMask = umask(0o177)
        defer { umask(previousMask) }
        do {
            channel = try ServerBootstrap(group: eventLoop)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Without it, a failing accept (EMFILE) is retried at once, forever.
                        let backoff = AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { _ in
                            connections.closeOldestIdle()
                            return ControlServer.acceptPause
                        }
                        try channel.pipeline.syncOperations.addHandler(backoff)
                    }
                }
                // A client that half-closes after its request (socat, nc -N) still gets the answer.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    ControlServer.peer(of: channel).flatMapThrowing { peer in
                        guard connections.admit(channel) else {
                            let refusal = ControlReply.failure("too many control connections are waiting for an answer; try again later", .refused)
                            channel.writeAndFlush(ByteBuffer(string: refusal.encodedLine())).whenComplete { _ in
                                channel.close(promise: nil)
                            }
                            return
                        }
                        let decoder = ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: ControlServer.maximumRequestLength)
                        try channel.pipeline.syncOperations.addHandler(decoder)
                        try channel.pipeline.syncOperations.addHandler(
                            ControlConnectionHandler(connections: connections, peer: peer, access: access, logger: logger, submit: submit))
                    }
                }
                .bind(unixDomainSocketPath: path)
                .wait()
        } catch {
            throw SystemError("bind", errno: (error as? IOError)?.errnoCode ?? EIO, subject: "control socket \(path)")
        }
        self.path = path
        do {
            try access.apply(to: path)
        } catch {
            close()
            throw error
        }
        if let unreachable = access.unreachableDirectory(of: path) {
            logger.warning("\(unreachable)")
        }
    }

    /// The peer's credentials and groups, as the kernel recorded them at connect; nil
    /// when they cannot be read, which leaves the peer only what anyone may do: nothing.
    private static func peer(of channel: Channel) -> EventLoopFuture<ControlAccess.Peer?> {
        guard let provider = channel as? SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(nil) }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.flatMap { credentials in
            let groups: EventLoopFuture<PeerGroups> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERGROUPS))
            return groups.map { groups in
                ControlAccess.Peer(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid, groups: groups.list)
            }.recover { _ in
                // More groups than the buffer holds: judged by its primary group alone.
                ControlAccess.Peer(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid, groups: [])
            }
        }.map(Optional.some).recover { _ in nil }
    }

    /// Closes the socket and removes its file; call it from a thread other than the event loop's.
    func close() {
        try? channel.close().wait()
        unlink(path)
    }
}

/// The open control connections, oldest first, and which of them still wait for their
/// request. Touched only on the control server's event loop.
private final class ControlConnections: @unchecked Sendable {
    private let eventLoop: EventLoop
    private let limit = ControlServer.connectionLimit
    private var open: [(channel: Channel, idle: Bool)] = []

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Takes `channel` in, making room by closing the oldest idle connection when
    /// needed; false when every open connection is busy with a request.
    func admit(_ channel: Channel) -> Bool {
        eventLoop.preconditionInEventLoop()
        if open.count >= limit {
            guard closeOldestIdle() else { return false }
        }
        open.append((channel, true))
        let deadline = channel.eventLoop.scheduleTask(in: ControlServer.requestTimeout) { [self] in
            if open.contains(where: { $0.channel === channel && $0.idle }) { channel.close(promise: nil) }
        }
        // Cancelled with the connection, so that an idle Baton does not wake at the
        // deadline of every connection it ever had.
        channel.closeFuture.whenComplete { [self] _ in
            deadline.cancel()
            open.removeAll { $0.channel === channel }
        }
        return true
    }

    /// `channel` sent its request: it is no longer idle.
    func busy(_ channel: Channel) {
        eventLoop.preconditionInEventLoop()
        if let index = open.firstIndex(where: { $0.channel === channel }) { open[index].idle = false }
    }

    /// Closes the oldest connection that has sent no request; false when there is none.
    @discardableResult
    func closeOldestIdle() -> Bool {
        eventLoop.preconditionInEventLoop()
        guard let index = open.firstIndex(where: \.idle) else { return false }
        let channel = open.remove(at: index).channel
        channel.close(promise: nil)
        return true
    }
}

/// Writes the answer to one control request.
struct ControlResponder: Sendable {
    let channel: Channel

    /// Sends one reply; after the final one, closes the connection and then runs
    /// `afterwards` on the event loop. A final reply the client does not read within
    /// ``ControlServer/requestTimeout`` closes the connection unread, so that a client
    /// that asks and never reads cannot hold a connection, or its reply, for ever.
    func send(_ reply: ControlReply, afterwards: (@Sendable () -> Void)? = nil) {
        let write = channel.writeAndFlush(ByteBuffer(string: reply.encodedLine()))
        if reply.final {
            let channel = self.channel
            let deadline = channel.eventLoop.scheduleTask(in: ControlServer.requestTimeout) {
                channel.close(promise: nil)
            }
            write.whenComplete { _ in
                deadline.cancel()
                channel.close(promise: nil)
                afterwards?()
            }
        }
    }
}

extension ControlResponder {
    /// Sends the final reply; the future completes once the connection is closed.
    func finish(_ reply: ControlReply) -> EventLoopFuture<Void> {
        let closed = channel.eventLoop.makePromise(of: Void.self)
        send(reply) { closed.succeed() }
        return closed.futureResult
    }
}

/// `struct ucred`, as SO_PEERCRED fills it in.
private struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// A buffer SO_PEERGROUPS fills with the peer's supplementary groups, in ascending order;
/// what it leaves is zero, so gid 0 is not read from it (a control group is never gid 0).
private struct PeerGroups: Sendable {
    var storage: InlineArray<256, UInt32> = .init(repeating: 0)

    var list: [gid_t] {
        storage.indices.map { storage[$0] }.filter { $0 != 0 }
    }
}

private final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connections: ControlConnections
    private let peer: ControlAccess.Peer?
    private let access: ControlAccess
    private let logger: Logger
    private let submit: @Sendable (ControlRequest, ControlResponder) -> Void
    private var answered = false

    init(
        connections: ControlConnections, peer: ControlAccess.Peer?, access: ControlAccess, logger: Logger,
        submit: @escaping @Sendable (ControlRequest, ControlResponder) -> Void
    ) {
        self.connections = connections
        self.peer = peer
        self.access = access
        self.logger = logger
        self.submit = submit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One request per connection; anything after it is ignored.
        guard !answered else { return }
        answered = true
        connections.busy(context.channel)
        let responder = ControlResponder(channel: context.channel)
        switch ControlRequest.decode(String(buffer: unwrapInboundIn(data))) {
        case .success(let request):
            guard let peer else {
                responder.send(.failure("refused: the peer's credentials (SO_PEERCRED) cannot be read; nothing changed", .permission))
                return
            }
            if let refusal = access.refusal(of: request.command, by: peer) {
                logger.warning("control request refused: \(refusal)")
                responder.send(.failure("refused: \(refusal)", .permission))
                return
            }
            submit(request, responder)
        case .failure(let error):
            responder.send(.failure(error.description, .invalid))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client closed its side: without a request there is nothing to answer.
        if event as? ChannelEvent == .inputClosed, !answered {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !answered else {
            context.close(promise: nil)
            return
        }
        answered = true
        connections.busy(context.channel)
        let problem =
            switch error {
            case is ByteToMessageDecoderError.PayloadTooLargeError:
                "the request is longer than \(ControlServer.maximumRequestLength) bytes: send one line such as {\"command\":\"status\"}"
            case is NIOExtrasErrors.LeftOverBytesError:
                "the request does not end with a newline"
            default:
                "the connection failed: \(error)"
            }
        ControlResponder(channel: context.channel).send(.failure(problem, .invalid))
    }
}
