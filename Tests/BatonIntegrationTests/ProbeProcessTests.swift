import BatonCore
import Foundation
import Testing

/// Readiness probes and canary health checks run in a session of their own, and
/// whatever they leave behind is killed with it when the run ends, and when their
/// worker goes (issue 26, defect 9). Each test's `sleep` has an argument of its own,
/// by which its processes are found.
@Suite(.serialized) struct ProbeProcessTests {
    /// Live processes (not zombies) with `argument` in their command line.
    static func processes(withArgument argument: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return data.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == argument }
        }
    }

    /// Waits (bounded) until no process has `argument`; returns those still there.
    static func waitUntilGone(_ argument: String, timeout: Double = 30) -> [Int32] {
        let deadline = Date().addingTimeInterval(timeout)
        var left = processes(withArgument: argument)
        while !left.isEmpty && Date() < deadline {
            usleep(20_000)
            left = processes(withArgument: argument)
        }
        return left
    }

    static func lines(of path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// A `sleep` duration no other test uses.
    static func uniqueSleep(_ seconds: Int) -> String {
        "\(seconds).\(getpid())\(Int.random(in: 100...999))"
    }

    static func killAll(_ argument: String) {
        for pid in processes(withArgument: argument) { kill(pid, SIGKILL) }
    }

    @Test func aReadinessProbeLeavesNoProcessBehind() throws {
        let scratch = ScratchDirectory()
        let sleep = Self.uniqueSleep(301)
        let flag = "\(scratch.path)/ready"
        let runs = "\(scratch.path)/runs"
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--ready", "exec:sleep \(sleep) & echo $! >> \(runs); test -e \(flag)",
                "--ready-timeout", "120s", "--", "/bin/sleep", "1000",
            ], in: scratch)
        defer {
            baton.stop()
            Self.killAll(sleep)
        }
        _ = try baton.waitForStatus(timeout: 60, "three probe runs") { _ in Self.lines(of: runs).count >= 3 }
        try scratch.write("ready", "")
        try baton.waitUntilServing()
        let left = Self.waitUntilGone(sleep)
        #expect(left.isEmpty, "probes left \(left.count) sleep(s) of \(Self.lines(of: runs).count) runs")
        #expect(baton.stop() == 0)
    }

    @Test func aProbeStillRunningWhenBatonStopsIsKilled() throws {
        let scratch = ScratchDirectory()
        let sleep = Self.uniqueSleep(302)
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--ready", "exec:sleep \(sleep)", "--ready-timeout", "120s",
                "--", "/bin/sleep", "1000",
            ], in: scratch)
        defer { Self.killAll(sleep) }
        _ = try baton.waitForStatus(timeout: 60, "the probe running") { _ in !Self.processes(withArgument: sleep).isEmpty }
        #expect(baton.stop() == 0)
        let left = Self.waitUntilGone(sleep)
        #expect(left.isEmpty, "the probe outlived Baton: \(left)")
    }

    @Test func aCanaryHealthCheckLeavesNoProcessBehindThroughRollbackAndStop() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let sleep = Self.uniqueSleep(300)
        let runs = "\(scratch.path)/runs"
        let check = "exec:sleep \(sleep) & echo $! >> \(runs); echo started"
        try scratch.write(
            "baton.toml",
            serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 2)
                + "\ncanary_check = \"\(check)\"\ncanary_check_interval = \"200ms\"\ncanary_check_failures = 3\n")
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        defer {
            baton.stop()
            Self.killAll(sleep)
        }
        try baton.waitUntilServing()
        let reload = try ControlClient.send(ControlRequest(command: .reload, canary: 1, hold: "10m"), to: baton.controlSocket)
        #expect(reload.ok, "\(reload)")
        _ = try baton.waitForStatus(timeout: 60, "three checks of the canary") { _ in Self.lines(of: runs).count >= 3 }
        let during = Self.waitUntilGone(sleep)
        #expect(during.isEmpty, "checks that ended left \(during.count) sleep(s)")
        let rollback = try ControlClient.send(ControlRequest(command: .rollback), to: baton.controlSocket)
        #expect(rollback.ok, "\(rollback)")
        _ = try baton.waitForStatus(timeout: 60, "generation 1 alone") { $0.generations.map(\.number) == [1] && $0.phase == .running }
        #expect(Self.waitUntilGone(sleep).isEmpty, "a check's sleep outlived the rollback")
        #expect(baton.stop() == 0)
        #expect(Self.waitUntilGone(sleep).isEmpty, "a check's sleep outlived Baton")
    }
}
