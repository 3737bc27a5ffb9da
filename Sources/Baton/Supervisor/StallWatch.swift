/// Finds serving workers that stall (`stall_timeout`): a worker whose steered socket
/// holds connections and has accepted none since a look that found it empty or moving,
/// for at least the timeout. It accepted what the steering program gave the socket, less
/// what waits in its queue.
///
/// Looked at by polling, and only while the serving generation has a stall timeout: an
/// idle Baton without one does not wake.
struct StallWatch {
    /// One steered socket of one worker.
    struct Socket: Hashable {
        var worker: WorkerID
        var listener: String
    }

    private struct Progress {
        var accepted: UInt64
        /// When the socket was last seen empty or accepting.
        var since: Double
    }

    private var progress: [Socket: Progress] = [:]

    /// How often to look for a timeout: four looks within it, at most every 25 ms.
    static func interval(for timeout: Duration) -> Duration {
        max(timeout / 4, .milliseconds(25))
    }

    /// Records a look at `socket` at `now` (seconds): the steering program has given it
    /// `steered` connections, `queued` wait in its accept queue. True when it has held
    /// connections and accepted none for `timeout`.
    mutating func look(at socket: Socket, steered: UInt64, queued: UInt32, now: Double, timeout: Duration) -> Bool {
        let accepted = steered &- UInt64(queued)
        guard queued > 0, let last = progress[socket], last.accepted == accepted else {
            progress[socket] = Progress(accepted: accepted, since: now)
            return false
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return now - last.since >= seconds
    }

    /// Forgets every socket of workers not in `workers`.
    mutating func keep(only workers: Set<WorkerID>) {
        progress = progress.filter { workers.contains($0.key.worker) }
    }
}
