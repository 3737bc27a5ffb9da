import Dispatch
import Glibc
import Synchronization

/// Accepts connections on a listening socket and hands each accepted descriptor to a
/// handler, typically `ClientBootstrap.withConnectedSocket`.
///
/// Why not `ServerBootstrap`'s own accept loop: a socket run by Baton is shared with the
/// other generation of the same slot, so a wake-up often finds the queue already emptied
/// by the sibling process. SwiftNIO handles that fine in release builds but asserts in
/// debug builds (`BaseSocketChannel`, `readResult == .some`). This loop treats an empty
/// queue as the normal case it is.
public final class ConnectionAcceptor: @unchecked Sendable {
    private let listener: Int32
    private let handler: @Sendable (Int32) -> Void
    // State below is touched on `queue` only.
    private let queue: DispatchQueue
    private var source: DispatchSourceRead?
    private var stopped = false
    /// Runs once the cancelled source has closed the descriptor.
    private var stopCompletion: (@Sendable () -> Void)?
    /// Set by `stop` at once, from any thread: a burst of accepts under way ends before
    /// its next accept instead of emptying the queue first.
    private let stopRequested = Atomic<Bool>(false)

    /// `handler` runs on the acceptor's queue with each accepted descriptor, which is
    /// close-on-exec and now belongs to the handler.
    public init(listener: Int32, label: String = "baton-worker.accept", handler: @escaping @Sendable (Int32) -> Void) {
        self.listener = listener
        self.handler = handler
        self.queue = DispatchQueue(label: label)
    }

    /// Starts accepting.
    public func start() {
        queue.async { [self] in
            guard !stopped, source == nil else { return }
            let source = DispatchSource.makeReadSource(fileDescriptor: listener, queue: queue)
            source.setEventHandler { [self] in acceptPending() }
            source.setCancelHandler { [self] in
                close(listener)
                stopCompletion?()
                stopCompletion = nil
            }
            self.source = source
            source.resume()
        }
    }

    /// Accepts what is queued now. Finding the queue empty is normal.
    private func acceptPending() {
        for _ in 0..<64 where !stopRequested.load(ordering: .relaxed) {
            let connection = accept(listener, nil, nil)
            if connection >= 0 {
                _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                handler(connection)
                continue
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            default: return  // EAGAIN: the queue is empty; anything else: retry on the next wake-up
            }
        }
    }

    /// Stops accepting and closes this process's descriptor of the listening socket (one
    /// reference: an inherited socket and its queue live on in the supervisor and in the
    /// next generation). `completion` runs once it is closed.
    public func stop(completion: @escaping @Sendable () -> Void) {
        stopRequested.store(true, ordering: .relaxed)
        queue.async { [self] in
            guard !stopped else { return completion() }
            stopped = true
            guard let source else {
                close(listener)
                return completion()
            }
            // The cancel handler closes the descriptor, later on this queue.
            stopCompletion = completion
            source.cancel()
            self.source = nil
        }
    }

    /// Stops accepting and closes this process's descriptor of the listening socket.
    public func stop() async {
        await withCheckedContinuation { continuation in
            stop { continuation.resume() }
        }
    }
}
