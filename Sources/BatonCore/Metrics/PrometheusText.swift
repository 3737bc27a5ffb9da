/// The status in Prometheus' text format (version 0.0.4): what Baton's `/metrics`
/// endpoint serves and `batonctl status --prometheus` prints, for a scraper or a
/// node_exporter textfile collector.
///
/// One function per metric family; a new family is one more function and one more
/// line in ``families(_:)``.
public enum PrometheusText {
    /// The `Content-Type` of the text.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The status's families, then, when given, those of Baton's own process.
    public static func render(_ status: StatusReport, process: ProcessMetrics? = nil) -> String {
        var text = ""
        for family in families(status) + (process?.families ?? []) {
            family.write(to: &text)
        }
        return text
    }

    /// Every family, in the order written.
    static func families(_ status: StatusReport) -> [MetricFamily] {
        [
            phase(status), servingGeneration(status), generations(status), workers(status),
            slotsRestarting(status), slotsCrashLooping(status), workerRestarts(status),
            acceptQueue(status), acceptQueueLimit(status), socketInRotation(status), socketSteered(status),
            socketFlows(status), flowDecisions(status),
            reloads(status), reloadDuration(status), recentReloads(status), pendingReloads(status),
            upgrades(status), droppedOutputBytes(status), rolloutReplacedSlots(status), canaryWeight(status),
            canaryHoldLeft(status), canaryConnectionShare(status),
        ]
    }

    // MARK: - Phase and generations

    static func phase(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_phase", .gauge, help: "1 for the phase Baton is in",
            samples: StatusReport.Phase.allCases.map {
                Sample(["phase": $0.rawValue], $0 == status.phase ? 1 : 0)
            })
    }

    static func servingGeneration(_ status: StatusReport) -> MetricFamily {
        let serving = status.generations.last { $0.role == .serving }
        return MetricFamily(
            "baton_serving_generation", .gauge, help: "The number of the generation that serves",
            samples: serving.map { [Sample([:], Double($0.number))] } ?? [])
    }

    static func generations(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_generation", .gauge, help: "Alive generations and their role",
            samples: status.generations.map {
                Sample(["generation": "\($0.number)", "role": $0.role.rawValue], 1)
            })
    }

    static func workers(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_workers", .gauge, help: "Workers by generation and state",
            samples: status.generations.flatMap { generation in
                StatusReport.WorkerStatus.State.allCases.map { state in
                    Sample(
                        ["generation": "\(generation.number)", "state": state.rawValue],
                        Double(generation.workers.count { $0.state == state }))
                }
            })
    }

    static func slotsRestarting(_ status: StatusReport) -> MetricFamily {
        perGeneration(status, "baton_slots_restarting", help: "Slots waiting to restart a crashed worker") {
            $0.restartingSlots.count
        }
    }

    static func slotsCrashLooping(_ status: StatusReport) -> MetricFamily {
        perGeneration(status, "baton_slots_crash_looping", help: "Slots that crashed several times in a row") {
            $0.crashLoopingSlots.count
        }
    }

    static func workerRestarts(_ status: StatusReport) -> MetricFamily {
        perGeneration(status, "baton_worker_restarts", help: "Restarts of the generation's current workers, summed") {
            $0.workers.reduce(0) { $0 + $1.restarts }
        }
    }

    private static func perGeneration(
        _ status: StatusReport, _ name: String, help: String,
        _ value: (StatusReport.GenerationStatus) -> Int
    ) -> MetricFamily {
        MetricFamily(
            name, .gauge, help: help,
            samples: status.generations.map {
                Sample(["generation": "\($0.number)"], Double(value($0)))
            })
    }

    // MARK: - Listeners

    static func acceptQueue(_ status: StatusReport) -> MetricFamily {
        perSocket(status, "baton_accept_queue", help: "Connections waiting in the socket's accept queue") { $0.queued.map { Double($0) } }
    }

    static func acceptQueueLimit(_ status: StatusReport) -> MetricFamily {
        perSocket(status, "baton_accept_queue_limit", help: "The accept queue's limit (backlog)") { $0.backlog.map { Double($0) } }
    }

    static func socketInRotation(_ status: StatusReport) -> MetricFamily {
        perSocket(status, "baton_socket_in_rotation", help: "1 for a steered socket that takes new connections") {
            $0.inRotation.map { $0 ? 1 : 0 }
        }
    }

    static func socketSteered(_ status: StatusReport) -> MetricFamily {
        perSocket(
            status, "baton_socket_steered_total", .counter,
            help: "New connections (datagrams for UDP) the steering program gave the socket"
        ) { $0.steered.map { Double($0) } }
    }

    static func socketFlows(_ status: StatusReport) -> MetricFamily {
        perSocket(status, "baton_socket_flows", help: "UDP flows the steering program's flow table holds for the socket") {
            $0.flows.map { Double($0) }
        }
    }

    static func flowDecisions(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_flow_decisions_total", .counter,
            help:
                "Datagrams of a UDP listener with flows, by where the steering program sent them: by QUIC cookie, by flow, new flow, or fallback to the rotation after the flow's socket closed",
            samples: status.listeners.flatMap { listener -> [Sample] in
                guard let decisions = listener.flowDecisions else { return [] }
                return [("cookie", decisions.cookie), ("flow", decisions.flow), ("new", decisions.new), ("fallback", decisions.fallback)]
                    .map { Sample(["listener": listener.name, "decision": $0.0], Double($0.1)) }
            })
    }

    /// One sample per socket that has a value: labelled by listener, slot (`shared` for
    /// a socket every slot uses) and generation (`shared` for a socket generations share).
    private static func perSocket(
        _ status: StatusReport, _ name: String, _ kind: MetricFamily.Kind = .gauge, help: String,
        _ value: (StatusReport.SocketStatus) -> Double?
    ) -> MetricFamily {
        MetricFamily(
            name, kind, help: help,
            samples: status.listeners.flatMap { listener in
                listener.sockets.compactMap { socket in
                    value(socket).map {
                        Sample(
                            [
                                "listener": listener.name, "slot": socket.slot.map { "\($0)" } ?? "shared",
                                "generation": socket.generation.map { "\($0)" } ?? "shared",
                            ], $0)
                    }
                }
            })
    }

    // MARK: - Reloads

    static func reloads(_ status: StatusReport) -> MetricFamily {
        let finished = StatusReport.ReloadRecord.Outcome.allCases.filter { $0 != .running }
        return MetricFamily(
            "baton_reloads_total", .counter, help: "Reloads finished since Baton started, by result",
            samples: status.reloadStatistics.map { statistics in
                finished.map { Sample(["result": $0.rawValue], Double(statistics[$0])) }
            } ?? [])
    }

    static func reloadDuration(_ status: StatusReport) -> MetricFamily {
        guard let histogram = status.reloadStatistics?.durations, histogram.counts.count == histogram.bounds.count + 1 else {
            return MetricFamily("baton_reload_duration_seconds", .histogram, help: "", samples: [])
        }
        var cumulative = 0
        var samples: [Sample] = []
        for (index, count) in histogram.counts.enumerated() {
            cumulative += count
            let bound = index < histogram.bounds.count ? format(histogram.bounds[index]) : "+Inf"
            samples.append(Sample(suffix: "_bucket", ["le": bound], Double(cumulative)))
        }
        samples.append(Sample(suffix: "_sum", [:], histogram.sum))
        samples.append(Sample(suffix: "_count", [:], Double(cumulative)))
        return MetricFamily(
            "baton_reload_duration_seconds", .histogram,
            help: "How long finished reloads took, from reading the configuration to the outcome, a canary's hold excepted",
            samples: samples)
    }

    static func recentReloads(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_recent_reloads", .gauge, help: "Reloads in Baton's recent history, by result",
            samples: StatusReport.ReloadRecord.Outcome.allCases.map { result in
                Sample(["result": result.rawValue], Double(status.reloads.count { $0.result == result }))
            })
    }

    static func pendingReloads(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_pending_reloads", .gauge, help: "Reloads waiting for the current one",
            samples: [Sample([:], Double(status.pendingReloads))])
    }

    static func upgrades(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_upgrades", .gauge, help: "In-place upgrades of Baton's own binary",
            samples: [Sample([:], Double(status.upgrades ?? 0))])
    }

    static func droppedOutputBytes(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_dropped_output_bytes", .gauge,
            help: "Bytes of worker output dropped because Baton's own output was not read fast enough",
            samples: status.droppedOutputBytes.map { [Sample([:], Double($0))] } ?? [])
    }

    // MARK: - Rollouts

    static func rolloutReplacedSlots(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_rollout_replaced_slots", .gauge,
            help: "A rolling reload under way: slots whose new worker serves instead of the old one",
            samples: status.rollout.map { rollout in
                [
                    Sample(
                        ["from": "\(rollout.from)", "to": "\(rollout.to)", "direction": rollout.rollingBack == nil ? "forward" : "back"],
                        Double(rollout.replacedSlots.count))
                ]
            } ?? [])
    }

    static func canaryWeight(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_canary_weight_percent", .gauge,
            help: "A canary that holds: its share of new connections, in percent",
            samples: status.rollout.flatMap { rollout in
                rollout.canary.map { [Sample(["generation": "\(rollout.to)"], Double($0.weight))] }
            } ?? [])
    }

    static func canaryHoldLeft(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_canary_hold_seconds_left", .gauge,
            help: "A canary that holds: seconds until it is promoted or rolled back by itself",
            samples: status.rollout.flatMap { rollout in
                rollout.canary?.holdLeft.map { [Sample(["generation": "\(rollout.to)"], $0)] }
            } ?? [])
    }

    static func canaryConnectionShare(_ status: StatusReport) -> MetricFamily {
        MetricFamily(
            "baton_canary_connections_share", .gauge,
            help: "A canary that holds: each generation's share (0 to 1) of the new connections the steering program gave out since the canary took its share",
            samples: status.rollout?.canary?.connections.map { counts in
                counts.map { Sample(["generation": "\($0.generation)"], $0.share) }
            } ?? [])
    }

    // MARK: - The text format

    /// A number as the format writes it: integers without a fraction, `+Inf`, `NaN`.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return "\(Int64(value))" }
        return "\(value)"
    }
}

/// One metric family: its `# HELP` and `# TYPE` lines and its samples. A family without
/// samples writes nothing.
struct MetricFamily {
    enum Kind: String {
        case gauge, counter, histogram
    }

    let name: String
    let kind: Kind
    let help: String
    let samples: [Sample]

    init(_ name: String, _ kind: Kind, help: String, samples: [Sample]) {
        self.name = name
        self.kind = kind
        self.help = help
        self.samples = samples
    }

    func write(to text: inout String) {
        guard !samples.isEmpty else { return }
        text += "# HELP \(name) \(Self.escaped(help, quotes: false))\n# TYPE \(name) \(kind.rawValue)\n"
        for sample in samples {
            text += name + sample.suffix
            if !sample.labels.isEmpty {
                text += "{" + sample.labels.map { "\($0.name)=\"\(Self.escaped($0.value, quotes: true))\"" }.joined(separator: ",") + "}"
            }
            text += " \(PrometheusText.format(sample.value))\n"
        }
    }

    /// Backslashes and line feeds escaped, and double quotes in label values.
    static func escaped(_ text: String, quotes: Bool) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\"" where quotes: escaped += "\\\""
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

/// One line of a family: a suffix of its name (`_bucket`, `_sum`, `_count` for a
/// histogram), labels in order, and the value.
struct Sample {
    let suffix: String
    let labels: [(name: String, value: String)]
    let value: Double

    init(suffix: String = "", _ labels: KeyValuePairs<String, String>, _ value: Double) {
        self.suffix = suffix
        self.labels = labels.map { ($0.key, $0.value) }
        self.value = value
    }
}
