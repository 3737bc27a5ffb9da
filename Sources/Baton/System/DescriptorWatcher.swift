import CBatonShim
import Glibc
import Synchronization

/// Calls a handler whenever one of its descriptors has input, from one thread of its
/// own that sleeps in `epoll_wait(2)`: while nothing happens, nothing runs and nothing
/// wakes. (Dispatch sources would do the same job, but libdispatch on Linux then runs a
/// thread-pool monitor that wakes the process every second, forever.)
final class DescriptorWatcher: Sendable {
    /// Reads what is there without blocking; returns false at the end of input, after
    /// which the watcher stops watching the descriptor and closes it.
    typealias Handler = @Sendable (Int32) -> Bool

    static let shared = DescriptorWatcher()

    private let epoll: Int32
    /// Handlers run with this lock held, so that once ``close(_:)`` returns, the
    /// descriptor's handler never runs again and the number cannot be reused under it.
    private let handlers = Mutex<[Int32: Handler]>([:])

    private init() {
        var epoll: Int32 = -1
        let error = baton_epoll_create(&epoll)
        precondition(error == 0, "epoll_create1: \(String(cString: strerror(error)))")
        self.epoll = epoll
        Thread.detach { [self] in run() }
    }

    /// Starts calling `handler` whenever `fd` has input. The watcher owns `fd` from now on.
    func watch(_ fd: Int32, subject: String, _ handler: @escaping Handler) throws(SystemError) {
        try handlers.withLock { handlers throws(SystemError) in
            let error = baton_epoll_watch(epoll, fd, true)
            guard error == 0 else { throw SystemError("epoll_ctl", errno: error, subject: subject) }
            handlers[fd] = handler
        }
    }

    /// Stops watching `fd` and closes it.
    func close(_ fd: Int32) {
        handlers.withLock { handlers in
            guard handlers.removeValue(forKey: fd) != nil else { return }
            _ = baton_epoll_watch(epoll, fd, false)
            Glibc.close(fd)
        }
    }

    private func run() {
        var ready = [Int32](repeating: -1, count: 64)
        while true {
            let count = ready.withUnsafeMutableBufferPointer { baton_epoll_wait(epoll, $0.baseAddress, Int32($0.count)) }
            precondition(count >= 0, "epoll_wait: \(String(cString: strerror(-count)))")
            for fd in ready.prefix(Int(count)) {
                handlers.withLock { handlers in
                    guard let handler = handlers[fd], !handler(fd) else { return }
                    handlers[fd] = nil
                    _ = baton_epoll_watch(epoll, fd, false)
                    Glibc.close(fd)
                }
            }
        }
    }
}
