import BatonCore
import Testing

/// The text `/metrics` serves and `batonctl status --prometheus` prints.
@Suite struct PrometheusTextTests {
    static func status(statistics: StatusReport.ReloadStatistics? = nil) -> StatusReport {
        StatusReport(
            pid: 7, phase: .running, configuration: "command line", command: ["./server"],
            generations: [
                .init(
                    number: 2, role: .draining,
                    workers: [.init(slot: 0, restarts: 0, pid: 10, state: .stopping, status: nil, uptime: nil)],
                    restartingSlots: [], crashLoopingSlots: []),
                .init(
                    number: 3, role: .serving,
                    workers: [
                        .init(slot: 0, restarts: 2, pid: 11, state: .ready, status: nil, uptime: 1),
                        .init(slot: 1, restarts: 0, pid: 12, state: .ready, status: nil, uptime: 1),
                    ],
                    restartingSlots: [], crashLoopingSlots: [1]),
            ],
            listeners: [
                .init(
                    name: "web \"main\"", address: "tcp://127.0.0.1:8080", reusePort: .perWorker,
                    sockets: [
                        .init(slot: 0, queued: 3, backlog: 128), .init(slot: nil),
                        .init(slot: 1, generation: 3, inRotation: true, queued: 0, backlog: 128, steered: 42),
                    ])
            ],
            reloads: [.init(started: 1, finished: 2, result: .tookOver, generation: 3)],
            pendingReloads: 1, upgrades: 0, reloadStatistics: statistics)
    }

    @Test func gaugesOfTheStatus() {
        let text = PrometheusText.render(Self.status())
        for line in [
            "# HELP baton_phase 1 for the phase Baton is in",
            "# TYPE baton_phase gauge",
            #"baton_phase{phase="running"} 1"#,
            #"baton_phase{phase="reloading"} 0"#,
            "baton_serving_generation 3",
            #"baton_generation{generation="2",role="draining"} 1"#,
            #"baton_workers{generation="3",state="ready"} 2"#,
            #"baton_workers{generation="2",state="stopping"} 1"#,
            #"baton_slots_crash_looping{generation="3"} 1"#,
            #"baton_worker_restarts{generation="3"} 2"#,
            #"baton_accept_queue{listener="web \"main\"",slot="0",generation="shared"} 3"#,
            #"baton_accept_queue_limit{listener="web \"main\"",slot="0",generation="shared"} 128"#,
            #"baton_socket_in_rotation{listener="web \"main\"",slot="1",generation="3"} 1"#,
            "# TYPE baton_socket_steered_total counter",
            #"baton_socket_steered_total{listener="web \"main\"",slot="1",generation="3"} 42"#,
            #"baton_recent_reloads{result="took-over"} 1"#,
            "baton_pending_reloads 1",
            "baton_upgrades 0",
        ] {
            #expect(text.split(separator: "\n").contains(Substring(line)), "missing \(line) in:\n\(text)")
        }
        #expect(!text.contains("baton_reloads_total"), "a status without statistics has no counters")
        #expect(text.hasSuffix("\n"))
    }

    @Test func batonsOwnProcessFollowsTheStatus() {
        let process = ProcessMetrics(
            version: "1.2.3", cpuSeconds: 1.5, residentBytes: 20_000_000, virtualBytes: 90_000_000, openDescriptors: 12,
            maximumDescriptors: 1024, startTime: 1_700_000_000.25)
        let text = PrometheusText.render(Self.status(), process: process)
        for line in [
            "# TYPE baton_build_info gauge", #"baton_build_info{version="1.2.3"} 1"#,
            "# TYPE process_cpu_seconds_total counter", "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 20000000", "process_virtual_memory_bytes 90000000",
            "process_open_fds 12", "process_max_fds 1024", "process_start_time_seconds 1700000000.25",
        ] {
            #expect(text.split(separator: "\n").contains(Substring(line)), "missing \(line) in:\n\(text)")
        }
        #expect(text.hasPrefix(PrometheusText.render(Self.status())), "the status's families come first, unchanged")
        let unreadable = PrometheusText.render(Self.status(), process: ProcessMetrics(version: "1.2.3"))
        #expect(unreadable.contains("baton_build_info") && !unreadable.contains("process_"), "a value not read is left out")
    }

    @Test func aRolloutAndItsCanaryAreGauges() {
        var status = Self.status()
        #expect(!PrometheusText.render(status).contains("baton_canary_weight_percent{"))
        status.rollout = .init(
            from: 3, to: 4, batch: 1, replacedSlots: [], batchSlots: [],
            canary: .init(
                workers: 1, weight: 10, slots: [0], holdLeft: 42, after: "promote",
                connections: StatusReport.RolloutStatus.GenerationConnections.shares([(3, 900), (4, 100)])))
        let text = PrometheusText.render(status)
        for line in [
            #"baton_rollout_replaced_slots{from="3",to="4",direction="forward"} 0"#,
            #"baton_canary_weight_percent{generation="4"} 10"#,
            #"baton_canary_hold_seconds_left{generation="4"} 42"#,
            #"baton_canary_connections_share{generation="3"} 0.9"#,
            #"baton_canary_connections_share{generation="4"} 0.1"#,
        ] {
            #expect(text.split(separator: "\n").contains(Substring(line)), "missing \(line) in:\n\(text)")
        }
    }

    @Test func reloadCountersAndCumulativeHistogram() {
        var statistics = StatusReport.ReloadStatistics()
        statistics.record(.tookOver, seconds: 0.3)
        statistics.record(.tookOver, seconds: 0.3)
        statistics.record(.rolledBack, seconds: 7)
        statistics.record(.failed, seconds: 1000)
        let text = PrometheusText.render(Self.status(statistics: statistics))
        let expected = """
            # HELP baton_reloads_total Reloads finished since Baton started, by result
            # TYPE baton_reloads_total counter
            baton_reloads_total{result="took-over"} 2
            baton_reloads_total{result="rolled-back"} 1
            baton_reloads_total{result="canceled"} 0
            baton_reloads_total{result="failed"} 1
            # HELP baton_reload_duration_seconds How long finished reloads took, from reading the configuration to the outcome, a canary's hold excepted
            # TYPE baton_reload_duration_seconds histogram
            baton_reload_duration_seconds_bucket{le="0.05"} 0
            baton_reload_duration_seconds_bucket{le="0.1"} 0
            baton_reload_duration_seconds_bucket{le="0.25"} 0
            baton_reload_duration_seconds_bucket{le="0.5"} 2
            baton_reload_duration_seconds_bucket{le="1"} 2
            baton_reload_duration_seconds_bucket{le="2.5"} 2
            baton_reload_duration_seconds_bucket{le="5"} 2
            baton_reload_duration_seconds_bucket{le="10"} 3
            baton_reload_duration_seconds_bucket{le="30"} 3
            baton_reload_duration_seconds_bucket{le="60"} 3
            baton_reload_duration_seconds_bucket{le="120"} 3
            baton_reload_duration_seconds_bucket{le="300"} 3
            baton_reload_duration_seconds_bucket{le="+Inf"} 4
            baton_reload_duration_seconds_sum 1007.6
            baton_reload_duration_seconds_count 4

            """
        #expect(text.contains(expected), "in:\n\(text)")
    }

    @Test func aHistogramThatDoesNotAddUpIsLeftOut() {
        var statistics = StatusReport.ReloadStatistics()
        statistics.durations.counts = [1]
        #expect(!PrometheusText.render(Self.status(statistics: statistics)).contains("baton_reload_duration_seconds"))
    }

    @Test func numbersAsTheFormatWritesThem() {
        #expect(PrometheusText.format(3) == "3")
        #expect(PrometheusText.format(0.25) == "0.25")
        #expect(PrometheusText.format(.infinity) == "+Inf")
        #expect(PrometheusText.format(.nan) == "NaN")
    }
}
