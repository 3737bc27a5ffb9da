import Glibc
import NIOCore

/// What the supervisor reports: reload progress to its askers, status and metrics.
extension Supervisor {
    /// Tells the askers of these reloads, the log and systemd how the reload goes; a
    /// new serving configuration moves `/metrics`, and a canary that takes its share
    /// marks where its connection counts start.
    func report(_ progress: ReloadProgress, to ids: [ReloadRequestID]) {
        if case .tookOver(let generation, _) = progress, let configuration = configuration(of: generation) {
            metrics?.apply(configuration.metrics)
        }
        if case .canaryServing(let generation, _, _, _, _) = progress, let configuration = configuration(of: generation) {
            canaryBaseline = CanaryBaseline(generation: generation, sockets.status(of: configuration.listeners))
        }
        guard !ids.isEmpty else { return }
        let replies = reloads.record(progress, for: ids, at: Clock.wallTime())
        announcer.reload(progress, id: ids[0], statusLine: projection.line)
        for (responder, reply) in replies {
            responder.send(reply)
        }
    }

    var projection: StatusProjection {
        StatusProjection(machine: machine, workers: workers, reloads: reloads.history)
    }

    func status() -> StatusReport {
        var report = projection.report(
            pid: getpid(), configurationName: source.name,
            listeners: sockets.status(of: machine.generations.last?.configuration.listeners ?? []),
            now: Clock.monotonic(), scaledTo: reloads.scaledTo, upgrades: upgrades, upgradeError: upgradeError,
            reloadStatistics: reloads.statistics, canaryHoldEnds: canaryHoldEnds, canaryBaseline: canaryBaseline,
            restartDue: { [timers] generation, slot in
                timers.due(.machine(.restart(generation: generation, slot: slot))).map {
                    Clock.monotonic() + Double(($0 - .now()).nanoseconds) / 1e9
                }
            })
        report.droppedOutputBytes = OutputWriter.droppedBytes
        return report
    }
}
