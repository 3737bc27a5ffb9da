import BatonCore
import Prometheus

/// `batonctl status --prometheus`: the status in Prometheus' text format, for a
/// node_exporter textfile collector or any scraper that runs a command.
enum PrometheusText {
    static func render(_ status: StatusReport) -> String {
        let registry = PrometheusCollectorRegistry()
        for phase in StatusReport.Phase.allCases {
            registry.makeGauge(name: "baton_phase", labels: [("phase", phase.rawValue)],
                               help: "1 for the phase Baton is in")
                .set(to: phase == status.phase ? 1.0 : 0.0)
        }
        for generation in status.generations {
            let number = "\(generation.number)"
            registry.makeGauge(name: "baton_generation", labels: [("generation", number), ("role", generation.role.rawValue)],
                               help: "Alive generations and their role")
                .set(to: 1.0)
            for state in StatusReport.WorkerStatus.State.allCases {
                registry.makeGauge(name: "baton_workers", labels: [("generation", number), ("state", state.rawValue)],
                                   help: "Workers by generation and state")
                    .set(to: Double(generation.workers.count { $0.state == state }))
            }
            registry.makeGauge(name: "baton_slots_restarting", labels: [("generation", number)],
                               help: "Slots waiting to restart a crashed worker")
                .set(to: Double(generation.restartingSlots.count))
            registry.makeGauge(name: "baton_slots_crash_looping", labels: [("generation", number)],
                               help: "Slots that crashed several times in a row")
                .set(to: Double(generation.crashLoopingSlots.count))
            registry.makeGauge(name: "baton_worker_restarts", labels: [("generation", number)],
                               help: "Restarts of the generation's current workers, summed")
                .set(to: Double(generation.workers.reduce(0) { $0 + $1.restarts }))
        }
        for listener in status.listeners {
            for socket in listener.sockets {
                let labels = [("listener", listener.name), ("slot", socket.slot.map { "\($0)" } ?? "shared"),
                              ("generation", socket.generation.map { "\($0)" } ?? "shared")]
                if let queued = socket.queued {
                    registry.makeGauge(name: "baton_accept_queue", labels: labels,
                                       help: "Connections waiting in the socket's accept queue")
                        .set(to: Double(queued))
                }
                if let backlog = socket.backlog {
                    registry.makeGauge(name: "baton_accept_queue_limit", labels: labels,
                                       help: "The accept queue's limit (backlog)")
                        .set(to: Double(backlog))
                }
                if let inRotation = socket.inRotation {
                    registry.makeGauge(name: "baton_socket_in_rotation", labels: labels,
                                       help: "1 for a steered socket that takes new connections")
                        .set(to: inRotation ? 1.0 : 0.0)
                }
                if let steered = socket.steered {
                    registry.makeCounter(name: "baton_socket_steered_total", labels: labels,
                                         help: "New connections (datagrams for UDP) the steering program gave the socket")
                        .increment(by: Int64(clamping: steered))
                }
            }
        }
        for result in StatusReport.ReloadRecord.Outcome.allCases {
            registry.makeGauge(name: "baton_recent_reloads", labels: [("result", result.rawValue)],
                               help: "Reloads in Baton's recent history, by result")
                .set(to: Double(status.reloads.count { $0.result == result }))
        }
        registry.makeGauge(name: "baton_pending_reloads", help: "Reloads waiting for the current one")
            .set(to: Double(status.pendingReloads))
        registry.makeGauge(name: "baton_upgrades", help: "In-place upgrades of Baton's own binary")
            .set(to: Double(status.upgrades ?? 0))
        registry.makeGauge(name: "baton_dropped_output_bytes",
                           help: "Bytes of worker output dropped because Baton's own output was not read fast enough")
            .set(to: Double(status.droppedOutputBytes ?? 0))
        return registry.emitToString()
    }
}
