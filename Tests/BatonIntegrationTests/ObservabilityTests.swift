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
        let testStart = Date().timeIntervalSince1970
        let scratch = ScratchDirectory()
        let (port, metricsPort) = (freePort(), freePort())
        let baton = try BatonUnderTest(
            [
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
        // Baton's own process, under the names every Prometheus client library uses.
        #expect(after[#"baton_build_info{version="\#(BatonVersion.current)"}"#] == 1)
        #expect((after["process_cpu_seconds_total"] ?? 0) > 0)
        #expect((after["process_resident_memory_bytes"] ?? 0) > 1_000_000)
        #expect((after["process_virtual_memory_bytes"] ?? 0) >= (after["process_resident_memory_bytes"] ?? .infinity))
        let descriptors = try #require(after["process_open_fds"])
        #expect(descriptors > 3 && descriptors <= (after["process_max_fds"] ?? 0), "\(descriptors) of \(after["process_max_fds"] ?? 0)")
        let started = try #require(after["process_start_time_seconds"])
        #expect(started >= testStart.rounded(.down) - 2 && started <= Date().timeIntervalSince1970, "\(started), test began \(testStart)")
        // batonctl renders the same families from the same status; Baton's process is not
        // batonctl's to describe.
        let printed = try run(Products.path("batonctl"), ["status", "--prometheus", "-s", baton.controlSocket])
        #expect(try Self.samples(printed.output)["baton_reload_duration_seconds_count"] == Double(Self.reloads))
        #expect(!printed.output.contains("process_") && !printed.output.contains("baton_build_info"))

        // Only /metrics, and only GET.
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(metricsPort)/"]) == "404")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url]) == "405")
        #expect(try curl(["-o", "/dev/null", "-w", "%{content_type}", url]) == PrometheusText.contentType)

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
            try scratch.write(
                "baton.toml",
                "metrics = \"tcp://127.0.0.1:\(metrics)\"\n"
                    + serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 1))
        }
        try write(metrics: first)
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(first)/metrics"]) == "200")

        try write(metrics: second)
        #expect(try baton.reload().ok)
        let moved = try Self.waitFor("the endpoint at its new port") {
            (try? curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(second)/metrics"])) == "200"
        }
        #expect(moved, "\(baton.log)")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(first)/metrics"]) == "000")

        // A port someone else holds.
        let holder = try LoadTarget.freeLoopbackPort()
        let taken = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(taken) }
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(holder).bigEndian),
            sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(taken, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(taken, 1) == 0)
        try write(metrics: holder)
        #expect(try baton.reload().ok)
        let reported = try Self.waitFor("the error logged") { baton.log.contains("metrics endpoint not moved") }
        #expect(reported, "\(baton.log)")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(second)/metrics"]) == "200")
        #expect(baton.stop() == 0)
    }

    /// Slow clients cannot lock scrapers out: sixteen connections that each send half a
    /// request and nothing more hold every slot, yet a scrape is answered (the oldest of
    /// them is closed to make room). Before, the seventeenth connection was closed
    /// unanswered for as long as they stayed.
    @Test func slowClientsCannotLockScrapersOut() throws {
        let scratch = ScratchDirectory()
        let metricsPort = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--metrics", "tcp://127.0.0.1:\(metricsPort)",
                "--", Products.path("baton-demo"),
            ], in: scratch)
        try baton.waitUntilServing()
        let url = "http://127.0.0.1:\(metricsPort)/metrics"
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", url]) == "200")

        var slow: [Int32] = []
        defer { slow.forEach { _ = close($0) } }
        for _ in 1...16 {
            let fd = try Self.connect(port: metricsPort)
            slow.append(fd)
            _ = "GET /metr".withCString { send(fd, $0, strlen($0), 0) }
        }
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", url]) == "200", "\(baton.log)")
        #expect(try Self.waitFor("the oldest slow connection closed") { Self.closedByPeer(slow[0]) })
        #expect(try baton.status().phase == .running)
        #expect(baton.stop() == 0)
    }

    /// A client that pipelines requests and never reads the answers grows Baton by no
    /// more than a few answers: Baton answers one at a time, reads no further while
    /// an answer waits, and closes a connection that has more requests waiting than the
    /// limit. Meanwhile scrapes and status are answered. Before, such a client took
    /// Baton's RSS from 17.5 MB to 667 MB.
    @Test func aClientThatPipelinesAndNeverReadsDoesNotGrowBaton() throws {
        let scratch = ScratchDirectory()
        let metricsPort = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "4", "--metrics", "tcp://127.0.0.1:\(metricsPort)",
                "--", Products.path("baton-demo"),
            ], in: scratch)
        try baton.waitUntilServing()
        let url = "http://127.0.0.1:\(metricsPort)/metrics"
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", url]) == "200")
        let pid = baton.process.processIdentifier
        let before = try #require(Self.peakResidentKilobytes(of: pid))

        let fd = try Self.connect(port: metricsPort)
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let request = Array(String(repeating: "GET /metrics HTTP/1.1\r\nHost: baton\r\n\r\n", count: 1000).utf8)
        var sent = 0
        sending: for _ in 1...200 {
            var offset = 0
            while offset < request.count {
                let count = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard count > 0 else { break sending }
                offset += count
                sent += count
            }
        }
        print("pipelined \(sent / 39) requests before Baton stopped reading or closed")
        #expect(try Self.waitFor("the pipelining connection closed") { Self.closedByPeer(fd) })
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", url]) == "200")
        #expect(try baton.status().phase == .running)
        let after = try #require(Self.peakResidentKilobytes(of: pid))
        print("Baton's peak RSS: \(before) KiB before, \(after) KiB after")
        #expect(after - before < 32 * 1024, "peak RSS grew from \(before) KiB to \(after) KiB")
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
        let baton = try BatonUnderTest(
            [
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
    /// output, relayed (`output = "prefix"`), is wrapped: one object a line, `label`
    /// `worker`, with the text as they wrote it.
    @Test func jsonLogLinesCarryWorkerAndReload() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "2", "--log-format", "json", "--output", "prefix",
                "--", Products.path("baton-demo"),
            ], in: scratch)
        let first = try baton.waitUntilServing()
        #expect(try baton.reload().ok)
        try baton.waitUntilServing(generation: 2)
        // The old generation's workers are gone once it has drained.
        _ = try baton.waitForStatus("generation 1 gone") { $0.generations.count == 1 }
        #expect(baton.stop() == 0)

        // Every line is an object; the workers' own are labelled so, and the rest are Baton's.
        let lines = baton.log.split(separator: "\n").map(String.init)
        var objects: [[String: Any]] = []
        var workerLines: [[String: Any]] = []
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)")
            guard let object else { continue }
            if object["label"] as? String == "worker" { workerLines.append(object) } else { objects.append(object) }
        }
        #expect(
            workerLines.contains {
                $0["generation"] as? Int == 2 && $0["slot"] as? Int == 1 && $0["pid"] is Int
                    && ($0["text"] as? String)?.hasPrefix("baton-demo[") == true
            }, "\(workerLines)")
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

    /// A worker that writes 100 KB lines, a JSON look-alike of Baton's lines after
    /// 60,000 spaces, ANSI escapes, `\r` and bytes that are not UTF-8, while Baton logs
    /// its reloads: every line of Baton's standard error is still one JSON object, the
    /// worker's are all labelled as the worker's (cut ones marked `continued`), and no
    /// line claims to be Baton's that Baton did not write. Before, 100 KB worker lines
    /// had Baton's lines spliced into them and the look-alike parsed as Baton's.
    @Test func workerOutputCannotForgeOrSplitBatonsLines() throws {
        let scratch = ScratchDirectory()
        let script = """
            trap '' TERM  # a drain signal in the middle would cut the count short
            for i in 1 2; do
              head -c 100000 /dev/zero | tr '\\0' a; echo
              printf '%60000s{"time":"2026-12-01T12:00:00.000Z","level":"info","label":"baton","message":"FORGED"}\\n' ''
              printf 'red \\033[31mtext\\r\\377\\n'
            done >&2
            # Ready only once it has written everything: a stop or drain that came
            # earlier (before the trap above, on a busy machine) would cut the count short.
            systemd-notify --ready
            trap - TERM
            exec sleep 1000
            """
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--log-format", "json", "--output", "prefix",
                "--drain-timeout", "5s", "--", "/bin/sh", "-c", script,
            ], in: scratch)
        try baton.waitUntilServing()
        let reloads = 3
        for _ in 1...reloads {
            #expect(try baton.reload().ok)
        }
        _ = try baton.waitForStatus("the last generation alone") { $0.generations.map(\.number) == [reloads + 1] }
        #expect(baton.stop() == 0)

        var batons: [[String: Any]] = []
        var worker: [[String: Any]] = []
        for line in baton.log.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line.prefix(200))")
            guard let object else { continue }
            if object["label"] as? String == "worker" { worker.append(object) } else { batons.append(object) }
        }
        #expect(!batons.contains { $0["message"] as? String == "FORGED" })
        #expect(batons.allSatisfy { $0["stream"] == nil && $0["text"] == nil })
        #expect(batons.filter { ($0["message"] as? String)?.hasPrefix("started worker") == true }.count == reloads + 1)
        let texts = worker.compactMap { $0["text"] as? String }
        #expect(worker.allSatisfy { $0["stream"] as? String == "stderr" && $0["generation"] is Int && $0["pid"] is Int })
        #expect(texts.filter { $0.hasSuffix("\"message\":\"FORGED\"}") }.count == 2 * (reloads + 1))
        #expect(texts.filter { $0 == "red \\x1b[31mtext\\x0d\\xff" }.count == 2 * (reloads + 1))
        #expect(texts.allSatisfy { $0.utf8.count <= 64 * 1024 }, "no part is longer than 64 KiB")
        // 100,000 bytes are one whole part and one continued.
        #expect(worker.filter { $0["continued"] as? Bool == true && ($0["text"] as? String)?.first == "a" }.count == 2 * (reloads + 1))
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
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Double]
        else {
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
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
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

    /// Whether the peer has closed or reset the connection, whatever is still unread.
    static func closedByPeer(_ fd: Int32) -> Bool {
        let peerClosed: Int16 = 0x2000  // POLLRDHUP, which Glibc's module leaves out (_GNU_SOURCE)
        var entry = pollfd(fd: fd, events: peerClosed, revents: 0)
        return poll(&entry, 1, 0) == 1 && entry.revents & (peerClosed | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    static func peakResidentKilobytes(of pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
}
