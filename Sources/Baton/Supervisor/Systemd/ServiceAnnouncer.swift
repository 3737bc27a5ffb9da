import Glibc
import Logging

/// What operators and systemd hear of the service: log lines and `sd_notify` fields
/// for reload progress and for the state machine's announcements.
struct ServiceAnnouncer {
    let logger: Logger
    let systemd: SystemdNotifier

    /// `statusLine` is the `STATUS=` line after the progress was recorded; `id` is the
    /// reload's, for the log line.
    func reload(_ progress: ReloadProgress, id: ReloadRequestID, statusLine: @autoclosure () -> String) {
        let metadata = LogMetadata.reload(id: id)
        if progress.isFinal { LogMetadata.reloadEnded(id, progress) }
        switch progress {
        case .queued:
            break
        case .loadingConfiguration:
            logger.info("reload: \(progress)", metadata: metadata)
            systemd.reloading("reloading")
        default:
            if progress.isFinal && !progress.succeeded {
                logger.error("reload: \(progress)", metadata: metadata)
            } else {
                logger.info("reload: \(progress)", metadata: metadata)
            }
        }
        if progress.isFinal {
            systemd.send("READY=1\nSTATUS=\(statusLine())")
        }
    }

    /// `pid` is that of the worker an announcement is about, if known.
    func announce(_ announcement: Announcement, pid: pid_t?, statusLine: @autoclosure () -> String) {
        switch announcement {
        case .serving(let generation):
            logger.info("generation \(generation) serves")
            systemd.send("READY=1\nSTATUS=\(statusLine())")
        case .workerExited(let worker, let exit, let restartAfter):
            let metadata = LogMetadata.worker(worker, pid: pid)
            if let restartAfter {
                logger.warning("worker \(worker) \(exit); restarting in \(DurationFormat.string(restartAfter))", metadata: metadata)
            } else {
                logger.warning("worker \(worker) \(exit)", metadata: metadata)
            }
            systemd.send("STATUS=\(statusLine())")
        case .workerStalled(let worker, let timeout, let restartAfter):
            logger.warning(
                "worker \(worker) accepted no connection for \(DurationFormat.string(timeout)) while its sockets held some: it leaves the rotation and its slot, what it holds goes to the other slots, it is told to drain (and killed at its drain timeout); its slot restarts in \(DurationFormat.string(restartAfter))",
                metadata: LogMetadata.worker(worker, pid: pid))
            systemd.send("STATUS=\(statusLine())")
        case .generationGone(let generation):
            logger.info("generation \(generation) has exited", metadata: LogMetadata.generation(generation))
            LogMetadata.generationGone(generation)
            systemd.send("STATUS=\(statusLine())")
        case .stopping:
            logger.info("stopping: draining every worker")
            systemd.send("STOPPING=1")
        }
    }
}
