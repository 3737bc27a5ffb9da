import CBatonShim
import Glibc

/// Receives the signals Baton acts on, and the exits of its children, on a thread of
/// its own that sleeps in `read(2)` on a signalfd: no handler, no polling.
enum SignalWatcher {
    /// The signals Baton handles itself. They must be blocked in every thread, so
    /// ``blockSignals()`` runs first thing in `main`, before any thread exists.
    static let handled: [Int32] = [SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2]

    enum Delivery: Sendable {
        case signal(Int32)
        /// A reaped child and its exit code, or its negated terminating signal.
        case childExited(pid_t, Int32)
    }

    nonisolated(unsafe) private static var descriptor: Int32 = -1

    /// Blocks the handled signals in the calling thread and every thread created later.
    static func blockSignals() {
        var fd: Int32 = -1
        let error = handled.withUnsafeBufferPointer { baton_signalfd($0.baseAddress, Int32($0.count), &fd) }
        precondition(error == 0, "signalfd: \(String(cString: strerror(error)))")
        descriptor = fd
    }

    /// Calls `deliver` for every signal and every reaped child, forever.
    static func start(_ deliver: @escaping @Sendable (Delivery) -> Void) {
        precondition(descriptor >= 0, "SignalWatcher.blockSignals() must run first")
        let fd = descriptor
        Thread.detach {
            while true {
                var signal: Int32 = 0
                guard baton_read_signal(fd, &signal) == 0 else { return }
                guard signal == SIGCHLD else {
                    deliver(.signal(signal))
                    continue
                }
                // SIGCHLD coalesces: reap everything that has exited.
                while true {
                    var pid: pid_t = 0
                    var status: Int32 = 0
                    guard baton_reap(&pid, &status) == 0, pid > 0 else { break }
                    deliver(.childExited(pid, status))
                }
            }
        }
    }
}

/// A detached thread for a loop that blocks in a system call.
enum Thread {
    static func detach(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let result = pthread_create(
            &thread, nil,
            { argument in
                let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
                box.body()
                return nil
            }, box)
        precondition(result == 0, "pthread_create: \(String(cString: strerror(result)))")
        pthread_detach(thread)
    }
}
