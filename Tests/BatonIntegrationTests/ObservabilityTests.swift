import BatonCore
import BatonLoad
import Foundation
import Synchronization
import Testing

/// Baton's own `/metrics` endpoint and its JSON log lines, as a scraper and a log
/// shipper see them.
@Suite(.serialized) struct ObservabilityTests {
    static let reloads = 10

    /// Reloads under load while a scraper scrapes all along: every scrape answers, and
    /// Prometheus' own parser reads it; the reload counter and the duration histogram
    /// moved by exactly the number of reloads, and the generation matches the status.
    @Test func metricsEndpointCountsReloadsWhileScraped() throws {
        try Self.requireParser()
        let scratch = ScratchDirectory()
        let (port, metricsPort) = (freePort(), freePort())
        let baton = try BatonUnderTest([
            "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--metrics", "tcp://127.0.0.1:\(metricsPort)",
            "--", Products.path("baton-demo"),
        ], in: scratch)
        try baton.waitUntilServing()
        let url = "http://127.0.0.1:\(metricsPort)/metrics"
        let before = try Self.samples(Self.scrape(url, into: "\(scratch.path)/before.txt"))
        #expect(before[#"baton_reloads_total{result="took-over"}"#] == 0)
        #expect(before["baton_reload_duration_seconds_count"] == 0)

        var loadConfiguration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        loadConfiguration.clients = 4
        let load = LoadGenerator(loadConfiguration)
        load.start()
        let scraping = Atomic(true)
        let scrapes = Mutex<[String]>([])
        let directory = scratch.path
        let scraper = Thread {
            var index = 0
            while scraping.load(ordering: .relaxed) && index < 2000 {
                index += 1
                let path = "\(directory)/scrape-\(index).txt"
                let answer = (try? Self.scrape(url, into: path)).map { _ in path } ?? "failed: scrape \(index)"
                scrapes.withLock { $0.append(answer) }
            }
        }
        scraper.start()
        var replies: [ControlReply] = []
        for _ in 1...Self.reloads {
            replies.append(try baton.reload())
        }
        // At least a few scrapes fall during the reloads, however busy the machine.
        _ = try baton.waitForStatus("a few scrapes") { _ in scrapes.withLock { $0.count } >= 5 }
        scraping.store(false, ordering: .relaxed)
        while !scraper.isFinished { usleep(10_000) }
        let report = load.stop()

        #expect(replies.allSatisfy { $0.ok }, "\(replies.filter { !$0.ok })")
        #expect(report.totalFailures == 0, "failures: \(report.failures)")
        let answered = scrapes.withLock { $0 }
        #expect(answered.allSatisfy { !$0.hasPrefix("failed") }, "\(answered.filter { $0.hasPrefix("failed") })")
        // Every scrape taken during the reloads parses, and the counter never goes back.
        var lastCount = 0.0
        for path in answered where !path.hasPrefix("failed") {
            let samples = try Self.samples(String(contentsOfFile: path, encoding: .utf8))
            let count = try #require(samples["baton_reload_duration_seconds_count"], "in \(path)")
            #expect(count >= lastCount)
            lastCount = count
        }

        let status = try baton.waitUntilServing(generation: Self.reloads + 1)
        let after = try Self.samples(Self.scrape(url, into: "\(scratch.path)/after.txt"))
        let tookOver = try #require(after[#"baton_reloads_total{result="took-over"}"#])
        #expect(tookOver - before[#"baton_reloads_total{result="took-over"}"#]! == Double(Self.reloads))
        #expect(after[#"baton_reloads_total{result="rolled-back"}"#] == 0)
        #expect(after["baton_reload_duration_seconds_count"] == Double(Self.reloads))
        #expect(after[#"baton_reload_duration_seconds_bucket{le="+Inf"}"#] == Double(Self.reloads))
        #expect((after["baton_reload_duration_seconds_sum"] ?? 0) > 0)
        let serving = try #require(status.generations.last { $0.role == .serving })
        #expect(after["baton_serving_generation"] == Double(serving.number))
        #expect(after[#"baton_generation{generation="\#(serving.number)",role="serving"}"#] == 1)
        #expect(after[#"baton_workers{generation="\#(serving.number)",state="ready"}"#] == 2)
        // batonctl renders the same families from the same status.
        let printed = try run(Products.path("batonctl"), ["status", "--prometheus", "-s", baton.controlSocket])
        #expect(try Self.samples(printed.output)["baton_reload_duration_seconds_count"] == Double(Self.reloads))

        // Only /metrics, and only GET.
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(metricsPort)/"]) == "404")
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url]) == "405")
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{content_type}", url]) == PrometheusText.contentType)

        let peak = Self.peakResidentKilobytes(of: baton.process.processIdentifier)
        print("baton peak RSS (VmHWM) with /metrics on, after \(answered.count) scrapes and \(Self.reloads) reloads: \(peak ?? -1) kB")
        #expect(baton.stop() == 0)
    }

    /// A reload that changes `metrics` moves the endpoint once the new generation takes
    /// over; one whose address cannot be bound leaves it where it was and says so.
    @Test func aReloadMovesTheEndpoint() throws {
        let scratch = ScratchDirectory()
        let (port, first, second) = (freePort(), freePort(), freePort())
        func write(metrics: Int) throws {
            try scratch.write("baton.toml", "metrics = \"tcp://127.0.0.1:\(metrics)\"\n"
                + serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 1))
        }
        try write(metrics: first)
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(first)/metrics"]) == "200")

        try write(metrics: second)
        #expect(try baton.reload().ok)
        let moved = try Self.waitFor("the endpoint at its new port") {
            (try? Self.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(second)/metrics"])) == "200"
        }
        #expect(moved, "\(baton.log)")
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(first)/metrics"]) == "000")

        // A port someone else holds.
        let holder = try LoadTarget.freeLoopbackPort()
        let taken = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(taken) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(holder).bigEndian),
                                  sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(taken, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(taken, 1) == 0)
        try write(metrics: holder)
        #expect(try baton.reload().ok)
        let reported = try Self.waitFor("the error logged") { baton.log.contains("metrics endpoint not moved") }
        #expect(reported, "\(baton.log)")
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(second)/metrics"]) == "200")
        #expect(baton.stop() == 0)
    }

    /// Connections past the limit are closed as soon as they are accepted, so that idle
    /// ones cannot pile up; once they go, scrapes are answered again.
    @Test func connectionsPastTheLimitAreClosed() throws {
        let scratch = ScratchDirectory()
        let metricsPort = freePort()
        let baton = try BatonUnderTest([
            "--listen", "http=tcp://127.0.0.1:\(freePort())", "--metrics", "tcp://127.0.0.1:\(metricsPort)",
            "--", Products.path("baton-demo"),
        ], in: scratch)
        try baton.waitUntilServing()
        let url = "http://127.0.0.1:\(metricsPort)/metrics"
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", url]) == "200")

        // Sixteen idle connections, accepted in the order they were made.
        var idle: [Int32] = []
        defer { idle.forEach { _ = close($0) } }
        for _ in 1...16 {
            idle.append(try Self.connect(port: metricsPort))
        }
        #expect(try Self.curl(["-o", "/dev/null", "-w", "%{http_code}", url]) == "000", "the seventeenth is closed unanswered")
        idle.forEach { _ = close($0) }
        idle = []
        let answered = try Self.waitFor("scrapes answered again") {
            (try? Self.curl(["-o", "/dev/null", "-w", "%{http_code}", url])) == "200"
        }
        #expect(answered)
        #expect(baton.stop() == 0)
    }

    /// `--metrics` is the one-line form's; with `--config` Baton refuses it rather than
    /// ignore it.
    @Test func metricsOptionWithAConfigurationFileIsRefused() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", serviceConfiguration(port: freePort(), command: ["true"], workers: 1))
        let result = try run(Products.path("baton"), ["--config", "\(scratch.path)/baton.toml", "--metrics", "tcp://127.0.0.1:9102"])
        #expect(result.status != 0)
        #expect(result.output.contains("--metrics is for the one-line form"), "\(result.output)")
        // So is every other one-line option: named, not silently overridden by the file.
        let two = try run(Products.path("baton"), ["--config", "\(scratch.path)/baton.toml", "--workers", "4", "--drain-timeout", "1s"])
        #expect(two.status != 0)
        #expect(two.output.contains("--drain-timeout, --workers are for the one-line form; with --config, set them in the file"), "\(two.output)")
    }

    /// `batonctl upgrade` keeps the endpoint and its counters: the new binary binds the
    /// same address and carries on counting.
    @Test func theEndpointAndItsCountersSurviveAnUpgrade() throws {
        try Self.requireParser()
        let scratch = ScratchDirectory()
        let metricsPort = freePort()
        let baton = try BatonUnderTest([
            "--listen", "http=tcp://127.0.0.1:\(freePort())", "--metrics", "tcp://127.0.0.1:\(metricsPort)",
            "--", Products.path("baton-demo"),
        ], in: scratch)
        try baton.waitUntilServing()
        #expect(try baton.reload().ok)
        _ = try baton.waitForStatus("generation 2 alone") { $0.generations.map(\.number) == [2] && $0.phase == .running }
        let upgrade = try run(Products.path("batonctl"), ["upgrade", "-s", baton.controlSocket])
        #expect(upgrade.status == 0, "\(upgrade.output)")
        _ = try baton.waitForStatus("the upgrade done") { $0.upgrades == 1 }
        #expect(try baton.reload().ok)
        let url = "http://127.0.0.1:\(metricsPort)/metrics"
        let samples = try Self.samples(Self.scrape(url, into: "\(scratch.path)/after-upgrade.txt"))
        #expect(samples["baton_upgrades"] == 1)
        #expect(samples[#"baton_reloads_total{result="took-over"}"#] == 2, "one reload before the upgrade, one after")
        #expect(samples["baton_reload_duration_seconds_count"] == 2)
        #expect(baton.stop() == 0)
    }

    /// `--log-format json`: every line Baton writes is one JSON object; a worker's lines
    /// carry its generation, slot and pid, and a reload's lines its id. The workers'
    /// output, prefixed, stays as they wrote it.
    @Test func jsonLogLinesCarryWorkerAndReload() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest([
            "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "2", "--log-format", "json", "--output", "prefix",
            "--", Products.path("baton-demo"),
        ], in: scratch)
        let first = try baton.waitUntilServing()
        #expect(try baton.reload().ok)
        try baton.waitUntilServing(generation: 2)
        // The old generation's workers are gone once it has drained.
        _ = try baton.waitForStatus("generation 1 gone") { $0.generations.count == 1 }
        #expect(baton.stop() == 0)

        // The workers' own output keeps its prefix; every other line is Baton's.
        let lines = baton.log.split(separator: "\n").map(String.init)
        let workerLines = lines.filter { $0.hasPrefix("[g") }
        #expect(workerLines.contains { $0.hasPrefix("[g2/s1] baton-demo[") }, "\(workerLines)")
        var objects: [[String: Any]] = []
        for line in lines where !line.hasPrefix("[g") {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)")
            if let object { objects.append(object) }
        }
        #expect(objects.allSatisfy { $0["time"] is String && $0["level"] is String && $0["message"] is String })

        let started = objects.filter { ($0["message"] as? String)?.hasPrefix("started worker") == true }
        #expect(started.count == 4, "two workers in each of two generations: \(started)")
        for line in started {
            #expect(line["generation"] is Int && line["slot"] is Int && line["pid"] is Int, "\(line)")
        }
        let firstPids = Set(first.generations[0].workers.compactMap(\.pid).map(Int.init))
        #expect(Set(started.filter { $0["generation"] as? Int == 1 }.compactMap { $0["pid"] as? Int }) == firstPids)
        let signalled = objects.filter { ($0["message"] as? String)?.hasPrefix("sending SIGTERM to worker g1/") == true }
        #expect(!signalled.isEmpty && signalled.allSatisfy { firstPids.contains($0["pid"] as? Int ?? 0) }, "\(signalled)")

        let reloadLines = objects.filter { ($0["message"] as? String)?.hasPrefix("reload:") == true }
        #expect(reloadLines.count >= 2, "the reload's start and its outcome: \(reloadLines)")
        let ids = Set(reloadLines.compactMap { $0["reload"] as? Int })
        #expect(ids.count == 1 && reloadLines.allSatisfy { $0["reload"] != nil }, "\(reloadLines)")
        // Lines logged during the reload by other parts of Baton carry the same id.
        let secondGeneration = started.filter { $0["generation"] as? Int == 2 }
        #expect(secondGeneration.allSatisfy { $0["reload"] as? Int == ids.first }, "\(secondGeneration)")
        // So do the old generation's drain lines after the outcome, up to its end; the
        // stop's lines for generation 2 belong to no reload.
        let drained = objects.filter { $0["generation"] as? Int == 1 && $0["message"] as? String != nil }
            .filter { !(($0["message"] as? String)?.hasPrefix("started worker") ?? true) }
        #expect(drained.contains { ($0["message"] as? String) == "generation 1 has exited" }, "\(drained)")
        #expect(!drained.isEmpty && drained.allSatisfy { $0["reload"] as? Int == ids.first }, "\(drained)")
        let stopped = objects.filter { ($0["message"] as? String)?.hasPrefix("sending SIGTERM to worker g2/") == true }
        #expect(!stopped.isEmpty && stopped.allSatisfy { $0["reload"] == nil }, "\(stopped)")
    }

    // MARK: - Helpers

    /// Prometheus' text parser, from Debian's python3-prometheus-client (.ci/run).
    static func requireParser() throws {
        let check = try run("/usr/bin/python3", ["-c", "import prometheus_client.parser"])
        if check.status != 0 {
            throw TestFailure("python3-prometheus-client is not installed (apt-get install python3-prometheus-client): \(check.output)")
        }
    }

    /// The samples of `text` as Prometheus' parser reads them: `name{label="value",...}`
    /// (labels sorted) to value. Throws what the parser says about text it rejects.
    static func samples(_ text: String) throws -> [String: Double] {
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = {}
            for family in text_string_to_metric_families(sys.argv[1]):
                for s in family.samples:
                    labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
                    out[s.name + ("{" + labels + "}" if labels else "")] = s.value
            print(json.dumps(out))
            """
        let result = try run("/usr/bin/python3", ["-c", script, text])
        guard result.status == 0, let data = result.output.data(using: .utf8),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Double] else {
            throw TestFailure("Prometheus' parser rejected:\n\(text)\n\(result.output)")
        }
        return object
    }

    /// GET `url` into `path`; throws unless it answered 200.
    @discardableResult
    static func scrape(_ url: String, into path: String) throws -> String {
        let code = try curl(["-o", path, "-w", "%{http_code}", url])
        guard code == "200" else { throw TestFailure("GET \(url): \(code)") }
        return try String(contentsOfFile: path, encoding: .utf8)
    }

    static func curl(_ arguments: [String]) throws -> String {
        try run("/usr/bin/curl", ["-s", "--max-time", "10"] + arguments).output
    }

    /// Polls `condition` for up to 30 seconds.
    static func waitFor(_ what: String, _ condition: () -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return false
    }

    /// A TCP connection to 127.0.0.1:`port`.
    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
                                  sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, connected == 0 else {
            close(fd)
            throw TestFailure("connect to port \(port): errno \(errno)")
        }
        return fd
    }

    static func peakResidentKilobytes(of pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
}
