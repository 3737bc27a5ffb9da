import BatonCore
import Foundation
import Testing

/// Restarts, failures at start, stops and orphans, with real processes.
@Suite(.serialized) struct SupervisionTests {
    @Test func crashedWorkerIsRestartedInItsSlotAndOthersAreUntouched() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--workers", "3", "--ready", "delay:50ms", "--", "/bin/sleep", "1000",
            ], in: scratch)
        let before = try baton.waitUntilServing()
        let workers = before.generations[0].workers
        kill(try #require(workers[1].pid), SIGKILL)
        let after = try baton.waitForStatus("slot 1 restarted") { status in
            status.generations.count == 1 && status.generations[0].workers.count == 3
                && status.generations[0].workers[1].restarts == 1 && status.generations[0].workers[1].state == .ready
        }
        #expect(after.generations[0].number == 1)
        #expect(after.generations[0].workers[0].pid == workers[0].pid)
        #expect(after.generations[0].workers[2].pid == workers[2].pid)
        #expect(after.generations[0].workers[1].pid != workers[1].pid)
        #expect(baton.log.contains("worker g1/s1 killed by SIGKILL; restarting in 500ms"))
        #expect(baton.stop() == 0)
    }

    @Test func firstGenerationThatCannotStartMakesBatonExitWithTheReason() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--workers", "2", "--", "/bin/sh", "-c", "exit 7"], in: scratch)
        #expect(baton.waitForExit() == 1)
        #expect(baton.log.contains("exited with status 7 before it was ready"))
    }

    @Test func missingCommandIsReportedByName() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--", "no-such-server-here"], in: scratch)
        #expect(baton.waitForExit() == 1)
        #expect(baton.log.contains("no-such-server-here: command not found"))
    }

    @Test(arguments: ["baton", "batonctl", "baton-bench"])
    func helpIsPrintedAndExitsZero(_ executable: String) throws {
        let help = try run(Products.path(executable), ["--help"])
        #expect(help.status == 0)
        #expect(help.output.contains("USAGE: \(executable)"))
    }

    /// Every option of the settings table in Docs/configuration.md (which
    /// ConfigurationTests checks against Settings.swift) is one that `baton` takes.
    @Test func everyOptionOfTheSettingsTableIsOneBatonTakes() throws {
        let docs = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../Docs/configuration.md")
        let table = try String(contentsOf: docs, encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("| `") }
        // The option column reads `--name`, or `in --listen …` for a listener's keys.
        let options = table.compactMap { row -> String? in
            guard let cell = row.split(separator: "|").dropFirst().first?.trimmingCharacters(in: .whitespaces),
                cell.hasPrefix("`--")
            else { return nil }
            return cell.dropFirst().prefix { $0 != "`" && $0 != " " }.description
        }
        #expect(options.count > 15, "the table's options: \(options)")
        let help = try run(Products.path("baton"), ["--help"]).output
        for option in options {
            #expect(help.contains("\(option) "), "baton --help does not list \(option)")
        }
    }

    @Test func badOptionsAreNamedAndExitNonZero() throws {
        let result = try run(Products.path("baton"), ["--workers", "many", "--", "/bin/true"])
        #expect(result.status == 64)
        #expect(result.output.contains("many"))
    }

    @Test func stopDrainsThenKillsWorkersThatIgnoreTheDrainSignal() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--workers", "2", "--ready", "delay:50ms", "--drain-timeout", "500ms", "--",
                "/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done",
            ], in: scratch)
        try baton.waitUntilServing()
        #expect(baton.stop() == 0)
        #expect(baton.log.contains("sending SIGKILL to worker g1/s0"))
    }

    @Test func orphansOfWorkersAreReaped() throws {
        let scratch = ScratchDirectory()
        // The worker leaves a child behind that outlives it; Baton, as subreaper, inherits and reaps it.
        let baton = try BatonUnderTest(
            [
                "--ready", "delay:50ms", "--", "/bin/sh", "-c", "sleep 0.3 & exec sleep 1000",
            ], in: scratch)
        let status = try baton.waitUntilServing()
        kill(try #require(status.generations[0].workers[0].pid), SIGKILL)
        _ = try baton.waitForStatus("the restarted worker") { $0.generations[0].workers.first?.restarts == 1 }
        usleep(600_000)
        let batonPID = baton.process.processIdentifier
        let zombies = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.range(of: ")")
            else { return false }
            let fields = stat[close.upperBound...].split(separator: " ")
            return fields[0] == "Z" && fields[1] == "\(batonPID)"
        }
        #expect(zombies.isEmpty, "zombies left under baton: \(zombies)")
        #expect(baton.stop() == 0)
    }

    @Test func sighupReloads() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--workers", "2", "--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        let before = try baton.waitUntilServing()
        kill(baton.process.processIdentifier, SIGHUP)
        let after = try baton.waitUntilServing(generation: 2)
        let serving = try #require(after.generations.last { $0.role == .serving })
        #expect(serving.number == 2)
        #expect(
            Set(serving.workers.compactMap(\.pid))
                .isDisjoint(with: before.generations.flatMap(\.workers).compactMap(\.pid)), "generation 2 runs new workers")
        #expect(after.reloads.map(\.result) == [.tookOver])
        #expect(baton.stop() == 0)
    }

    @Test func secondSignalKillsAtOnce() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--ready", "delay:50ms", "--drain-timeout", "10m", "--", "/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done",
            ], in: scratch)
        try baton.waitUntilServing()
        kill(baton.process.processIdentifier, SIGTERM)
        _ = try baton.waitForStatus("stopping") { $0.phase == .stopping }
        kill(baton.process.processIdentifier, SIGINT)
        #expect(baton.waitForExit() == 0)
    }
}

/// The control socket and configuration reloads: bad input changes nothing.
@Suite(.serialized) struct ControlTests {
    func rawRequest(_ line: String, to path: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect: \(errno)") }
        _ = line.withCString { write(fd, $0, strlen($0)) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(fd, &buffer, buffer.count)
        return String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self)
    }

    @Test func malformedAndUnknownRequestsGetAnErrorAndChangeNothing() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        let before = try baton.waitUntilServing()
        let garbage = try rawRequest("reload please\n", to: baton.controlSocket)
        #expect(garbage.contains(#""ok":false"#) && garbage.contains("not a JSON object"))
        let unknown = try rawRequest(#"{"command":"restart"}"# + "\n", to: baton.controlSocket)
        #expect(unknown.contains("unknown command \\\"restart\\\""))
        let after = try baton.status()
        #expect(after.generations.map(\.number) == before.generations.map(\.number))
        #expect(after.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid))
        #expect(baton.stop() == 0)
    }

    @Test func controlSocketIsPrivate() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let attributes = try FileManager.default.attributesOfItem(atPath: baton.controlSocket)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(baton.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: baton.controlSocket))
    }

    @Test func badConfigurationAtReloadFailsTheReloadAndChangesNothing() throws {
        let scratch = ScratchDirectory()
        let good = """
            [workers]
            command = ["/bin/sleep", "1000"]
            count = 2
            readiness = "delay:50ms"
            """
        try scratch.write("baton.toml", good)
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        let before = try baton.waitUntilServing()
        try scratch.write("baton.toml", good.replacingOccurrences(of: "count = 2", with: "count = \"two\""))
        let result = try run(Products.path("batonctl"), ["reload", "--wait", "-s", baton.controlSocket])
        #expect(result.status != 0)
        #expect(result.output.contains("baton.toml: workers.count = \"two\": expected an integer"))
        let after = try baton.status()
        #expect(after.generations.map(\.number) == [1])
        #expect(after.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid))
        #expect(after.reloads.last?.result == .failed)
        #expect(baton.stop() == 0)
    }

    @Test func secondBatonOnTheSameControlSocketIsRefused() throws {
        let scratch = ScratchDirectory()
        let first = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try first.waitUntilServing()
        let second = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        #expect(second.waitForExit() != 0)
        #expect(second.log.contains("another Baton is running there"))
        #expect(try first.status().phase == .running)
        #expect(first.stop() == 0)
    }

    @Test func scaleSetsTheWorkerCountOfThisAndEveryLaterReload() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--workers", "2", "--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let refused = try run(Products.path("batonctl"), ["scale", "0", "--wait", "-s", baton.controlSocket])
        #expect(
            refused.status != 0 && refused.output.contains("expected a number of workers from 1 to 1024, got 0; nothing changed"),
            "\(refused.output)")
        #expect(try baton.status().generations.map(\.number) == [1])

        let scaled = try run(Products.path("batonctl"), ["scale", "3", "--wait", "-s", baton.controlSocket])
        #expect(scaled.status == 0, "\(scaled.output)")
        let afterScale = try baton.waitUntilServing(generation: 2)
        #expect(afterScale.generations.last?.workers.count == 3)
        #expect(afterScale.scaledTo == 3)
        #expect(StatusFormatter.table(afterScale).contains("scaled to 3 worker(s) by batonctl scale"))

        // A plain reload keeps the scaled count.
        #expect(try baton.reload().ok)
        #expect(try baton.waitUntilServing(generation: 3).generations.last?.workers.count == 3)
        #expect(baton.stop() == 0)
    }

    @Test func statusInPrometheusTextFormat() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "2",
                "--", Products.path("baton-demo"),
            ], in: scratch)
        try baton.waitUntilServing()
        #expect(try baton.reload().ok)
        try baton.waitUntilServing(generation: 2)
        let result = try run(Products.path("batonctl"), ["status", "--prometheus", "-s", baton.controlSocket])
        #expect(result.status == 0)
        for line in [
            #"baton_phase{phase="running"} 1"#,
            #"baton_generation{generation="2",role="serving"} 1"#,
            #"baton_workers{generation="2",state="ready"} 2"#,
            #"baton_recent_reloads{result="took-over"} 1"#,
            #"baton_reloads_total{result="took-over"} 1"#,
            "baton_reload_duration_seconds_count 1",
            #"baton_accept_queue_limit{listener="http",slot="1",generation="#,
            "# TYPE baton_workers gauge",
        ] {
            #expect(result.output.contains(line), "missing \(line) in:\n\(result.output)")
        }
        #expect(baton.stop() == 0)
    }
}
