import Logging

/// What operators and systemd hear of the service: log lines and `sd_notify` fields
/// for reload progress and for the state machine's announcements.
struct ServiceAnnouncer {
    let logger: Logger
    let systemd: SystemdNotifier

    /// `statusLine` is the `STATUS=` line after the progress was recorded.
    func reload(_ progress: ReloadProgress, statusLine: @autoclosure () -> String) {
        switch progress {
        case .queued:
            break
        case .loadingConfiguration:
            logger.info("reload: \(progress)")
            systemd.reloading("reloading")
        default:
            if progress.isFinal && !progress.succeeded {
                logger.error("reload: \(progress)")
            } else {
                logger.info("reload: \(progress)")
            }
        }
        if progress.isFinal {
            systemd.send("READY=1\nSTATUS=\(statusLine())")
        }
    }

    func announce(_ announcement: Announcement, statusLine: @autoclosure () -> String) {
        switch announcement {
        case .serving(let generation):
            logger.info("generation \(generation) serves")
            systemd.send("READY=1\nSTATUS=\(statusLine())")
        case .workerExited(let worker, let exit, let restartAfter):
            if let restartAfter {
                logger.warning("worker \(worker) \(exit); restarting in \(DurationFormat.string(restartAfter))")
            } else {
                logger.warning("worker \(worker) \(exit)")
            }
            systemd.send("STATUS=\(statusLine())")
        case .workerStalled(let worker, let timeout, let restartAfter):
            logger.warning("worker \(worker) accepted no connection for \(DurationFormat.string(timeout)) while its sockets held some: it leaves the rotation and its slot, what it holds goes to the other slots, it is told to drain (and killed at its drain timeout); its slot restarts in \(DurationFormat.string(restartAfter))")
            systemd.send("STATUS=\(statusLine())")
        case .generationGone(let generation):
            logger.info("generation \(generation) has exited")
            systemd.send("STATUS=\(statusLine())")
        case .stopping:
            logger.info("stopping: draining every worker")
            systemd.send("STOPPING=1")
        }
    }
}
