import BatonCore
import BatonLoad
import Foundation
import Synchronization
import Testing

/// Rolling reloads under load: no request lost, and never more than count + batch
/// workers alive (Docs/rollouts.md).
@Suite(.serialized) struct RolloutTests {
    static let workers = 4
    /// A busy keep-alive worker never looks idle, so it drains at the end of its grace:
    /// a short one keeps the test short.
    static let rolling = "\ndrain_grace = \"1s\"\nstrategy = \"rolling\"\nbatch = 1\n"

    /// Reads Baton's workers (every thread's `children` list, less the forked copies of
    /// Baton itself that read a configuration file: `TOMLTrial`) over and over in the
    /// background, and keeps the largest number of them seen at once.
    final class ChildSampler: Sendable {
        private let pid: Int32
        private let running = Atomic(true)
        private let peak = Mutex((count: 0, samples: 0))
        private let done = Mutex(false)

        init(of pid: Int32) {
            self.pid = pid
            Thread.detachNewThread { [self] in
                while running.load(ordering: .relaxed) {
                    let count = children().count
                    peak.withLock { $0 = (max($0.count, count), $0.samples + 1) }
                    usleep(1_000)
                }
                done.withLock { $0 = true }
            }
        }

        func children() -> Set<Int32> {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            var pids = Set<Int32>()
            for task in tasks {
                let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
                pids.formUnion(text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
            }
            // Live workers only: a child forked but not yet executing its program still runs
            // Baton's, and one that is exiting (its memory gone, or a zombie) no longer runs
            // anything: its `exe` cannot be read.
            let baton = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
            return pids.filter { child in
                guard let program = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child)/exe") else { return false }
                return program != baton
            }
        }

        /// Stops sampling; returns the peak and how many samples were taken.
        func stop() -> (peak: Int, samples: Int) {
            running.store(false, ordering: .relaxed)
            while !done.withLock({ $0 }) { usleep(1_000) }
            return peak.withLock { ($0.count, $0.samples) }
        }
    }

    /// `baton-demo` under Baton, rolling one slot at a time, on a fresh port, from a
    /// configuration file the test can rewrite.
    func startDemo(in scratch: ScratchDirectory, command: [String] = [Products.path("baton-demo")]) throws -> (BatonUnderTest, Int) {
        let port = freePort()
        try scratch.write("baton.toml", serviceConfiguration(port: port, command: command, workers: Self.workers) + Self.rolling)
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        return (baton, port)
    }

    func load(on port: Int, _ mode: ConnectionMode) -> LoadGenerator {
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.mode = mode
        configuration.clients = 8
        let load = LoadGenerator(configuration)
        load.start()
        return load
    }

    @Test(arguments: [ConnectionMode.newConnection, .keepAlive])
    func twentyRollingReloadsUnderLoadLoseNothingAndNeverRunMoreThanOneExtraWorker(_ mode: ConnectionMode) throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(in: scratch)
        let sampler = ChildSampler(of: baton.process.processIdentifier)
        let load = load(on: port, mode)
        var replies: [ControlReply] = []
        for _ in 1...20 {
            replies.append(try baton.reload())
        }
        let report = load.stop()
        let (peak, samples) = sampler.stop()
        print("rolling, \(mode): \(report.succeeded) requests, \(report.totalFailures) failed, peak \(peak) workers in \(samples) samples")
        #expect(replies.allSatisfy { $0.ok }, "every reload must take over: \(replies.filter { !$0.ok })")
        #expect(replies.last?.generation == 21)
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 20, "the load must actually have run")
        #expect(report.distinctResponders > Self.workers, "several generations must have answered")
        #expect(samples > 100, "the sampler must actually have looked")
        #expect(peak <= Self.workers + 1, "at most count + batch workers alive, saw \(peak)")
        #expect(baton.stop() == 0)
    }

    /// The new configuration's command exits in slot 2: slots 0 and 1 were replaced
    /// already, go back to the old configuration, and nothing is lost meanwhile.
    @Test func aFailingBatchRollsBackAndTheOldConfigurationKeepsServing() throws {
        let scratch = ScratchDirectory()
        let demo = Products.path("baton-demo")
        let (baton, port) = try startDemo(in: scratch)
        let sampler = ChildSampler(of: baton.process.processIdentifier)
        let failing = ["/bin/sh", "-c", "test $BATON_SLOT -ne 2 || exit 3; exec \(demo)"]
        try scratch.write("baton.toml", serviceConfiguration(port: port, command: failing, workers: Self.workers) + Self.rolling)
        let load = load(on: port, .newConnection)
        let reload = try run(Products.path("batonctl"), ["reload", "--wait", "-s", baton.controlSocket])
        // Every replaced slot is back with generation 1 once generation 2 is gone.
        let status = try baton.waitForStatus(timeout: 60, "generation 1 alone again") { status in
            status.generations.count == 1 && status.generations[0].number == 1
                && status.generations[0].workers.count == Self.workers && status.generations[0].workers.allSatisfy { $0.state == .ready }
        }
        let report = load.stop()
        let (peak, _) = sampler.stop()
        print("rolling back: \(report.succeeded) requests, \(report.totalFailures) failed, peak \(peak) workers; reload said:\n\(reload.output)")
        #expect(reload.status == 1)
        #expect(reload.output.contains("slot 2: worker g2/s2 exited with status 3 before it was ready; slots 0, 1 go back to generation 1"))
        #expect(status.reloads.last?.result == .rolledBack)
        #expect(Set(status.generations[0].workers.map(\.slot)) == Set(0..<Self.workers))
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.answersByGeneration["2", default: 0] > 0, "generation 2 served its slots before the failure")
        #expect(peak <= Self.workers + 1, "at most count + batch workers alive, saw \(peak)")
        #expect(baton.stop() == 0)
    }

    func batonctl(_ arguments: [String], _ baton: BatonUnderTest) throws -> (status: Int32, output: String) {
        try run(Products.path("batonctl"), arguments + ["-s", baton.controlSocket])
    }

    func waitForCanary(of generation: Int, _ baton: BatonUnderTest) throws -> StatusReport {
        try baton.waitForStatus(timeout: 60, "the canary of generation \(generation) serving") { status in
            status.rollout?.to == generation && !(status.rollout?.canary?.slots.isEmpty ?? true)
        }
    }

    func waitForAlone(_ generation: Int, _ baton: BatonUnderTest) throws -> StatusReport {
        try baton.waitForStatus(timeout: 60, "generation \(generation) alone") { status in
            status.generations.map(\.number) == [generation] && status.rollout == nil
                && status.generations[0].workers.count == Self.workers && status.generations[0].workers.allSatisfy { $0.state == .ready }
        }
    }

    /// A canary of 1 worker of 4 at 10% gets between 5% and 15% of 20,000 requests; it is
    /// promoted; a second canary is rolled back and its worker is gone; nothing fails.
    @Test func aCanaryTakesItsShareIsPromotedAndAnotherIsRolledBack() throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(in: scratch)
        let load = load(on: port, .newConnection)
        let started = try batonctl(["reload", "--canary", "1", "--weight", "10%"], baton)
        #expect(started.status == 0, "\(started.output)")
        let holding = try waitForCanary(of: 2, baton)
        #expect(holding.rollout?.canary?.weight == 10)
        #expect(try batonctl(["reload"], baton).output.contains("a canary of generation 2 holds"))
        // A refused scale changes nothing: no count is kept for a later reload.
        let scaled = try batonctl(["scale", "6"], baton)
        #expect(scaled.status != 0 && scaled.output.contains("a canary of generation 2 holds"), "\(scaled.output)")
        #expect(try baton.status().scaledTo == nil)
        let before = load.snapshot
        var during = before
        let deadline = Date().addingTimeInterval(300)
        while during.succeeded - before.succeeded < 20_000 && Date() < deadline {
            usleep(100_000)
            during = load.snapshot
        }
        let total = during.succeeded - before.succeeded
        let canary = during.answersByGeneration["2", default: 0] - before.answersByGeneration["2", default: 0]
        let share = Double(canary) / Double(max(total, 1))
        print("canary at 10%: \(canary) of \(total) requests (\(share * 100)%)")
        #expect(total >= 20_000)
        #expect(share >= 0.05 && share <= 0.15, "the canary answered \(canary) of \(total)")
        // Baton's own count from the steering program agrees.
        let counted = try baton.status()
        let connections = try #require(counted.rollout?.canary?.connections, "status tells each generation's share")
        let reported = try #require(connections.first { $0.generation == 2 })
        print("status: \(connections.map { "generation \($0.generation): \($0.connections) (\($0.share * 100)%)" })")
        #expect(connections.map(\.generation) == [1, 2])
        #expect(connections.reduce(0) { $0 + $1.connections } >= UInt64(total), "every request counted since the canary began")
        #expect(reported.share >= 0.05 && reported.share <= 0.15, "status says the canary got \(reported.share * 100)%")
        #expect(StatusFormatter.table(counted).contains("new connections since the canary took its share: generation 1 "))
        let promoted = try batonctl(["promote"], baton)
        #expect(promoted.status == 0, "\(promoted.output)")
        try waitForAlone(2, baton)
        _ = try batonctl(["reload", "--canary", "1"], baton)
        let second = try waitForCanary(of: 3, baton)
        let canaryPid = try #require(second.generations.first { $0.number == 3 }?.workers.first?.pid)
        let rolledBack = try batonctl(["rollback"], baton)
        #expect(rolledBack.status == 0, "\(rolledBack.output)")
        let after = try waitForAlone(2, baton)
        let report = load.stop()
        #expect(kill(canaryPid, 0) != 0, "the rolled back canary's worker is gone")
        #expect(after.reloads.last?.result == .canceled, "a planned rollback is no failure")
        #expect(after.reloadStatistics?.rolledBack == 0 && after.reloadStatistics?.canceled == 1)
        #expect(after.scaledTo == nil && after.generations.first?.workers.count == 4)
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(baton.stop() == 0)
    }

    /// The canary's worker exits during the hold: Baton rolls back at once, `reload
    /// --wait` fails naming why, and nothing fails.
    @Test func aCanaryWorkerThatExitsRollsBackAtOnce() throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(in: scratch)
        let load = load(on: port, .newConnection)
        let (reload, output) = try startHoldingCanary(baton)
        let holding = try waitForCanary(of: 2, baton)
        let canaryPid = try #require(holding.generations.first { $0.number == 2 }?.workers.first?.pid)
        #expect((holding.rollout?.canary?.holdLeft ?? 0) > 0)
        kill(canaryPid, SIGTERM)
        let status = waitForExit(reload, timeout: 60)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try waitForAlone(1, baton)
        let report = load.stop()
        print("canary exited: \(report.succeeded) requests, \(report.totalFailures) failed; reload said:\n\(text)")
        #expect(status == 1)
        #expect(text.contains("rolled back: generation 2 failed (slot 0: worker g2/s0 exited with status 0 while the canary held)"))
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(baton.stop() == 0)
    }

    /// `batonctl reload --canary 1 --hold 10m --promote-after --wait-drained`, left
    /// running: it exits once the canary it asked for is over (promoted or rolled back).
    func startHoldingCanary(_ baton: BatonUnderTest) throws -> (Process, Pipe) {
        let reload = Process()
        let output = Pipe()
        reload.executableURL = URL(fileURLWithPath: Products.path("batonctl"))
        reload.arguments = ["reload", "--canary", "1", "--hold", "10m", "--promote-after", "--wait-drained", "-s", baton.controlSocket]
        reload.standardOutput = output
        try reload.run()
        return (reload, output)
    }

    /// A canary with a health check: the check passes while the flag file is absent and
    /// the canary holds; once the file exists the check fails three times in a row, Baton
    /// rolls back at once, `reload --wait` fails naming the check and quoting its last
    /// output, and nothing fails.
    @Test func aCanaryThatFailsItsHealthCheckRollsBackAtOnce() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let flag = "\(scratch.path)/unhealthy"
        let runs = "\(scratch.path)/checks.log"
        let check = "exec:echo $BATON_GENERATION >> \(runs); test ! -e \(flag) || { echo 'unhealthy:' $(cat \(flag)); exit 1; }"
        try scratch.write(
            "baton.toml",
            serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: Self.workers)
                + Self.rolling + "canary_check = \"\(check)\"\ncanary_check_interval = \"200ms\"\ncanary_check_failures = 3\n")
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        func checksRun() -> [String] {
            ((try? String(contentsOfFile: runs, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        #expect(checksRun().isEmpty, "no canary, no check")
        let load = load(on: port, .newConnection)
        let (reload, output) = try startHoldingCanary(baton)
        let holding = try waitForCanary(of: 2, baton)
        let canaryPid = try #require(holding.generations.first { $0.number == 2 }?.workers.first?.pid)
        // Passing checks keep the canary holding.
        let passed = try baton.waitForStatus(timeout: 60, "three checks of the canary run") { _ in checksRun().count >= 3 }
        #expect(passed.rollout?.canary != nil, "the canary still holds after passing checks")
        #expect(checksRun().allSatisfy { $0 == "2" }, "the check is told the canary's generation: \(checksRun())")
        try scratch.write("unhealthy", "database down")
        let status = waitForExit(reload, timeout: 60)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let alone = try waitForAlone(1, baton)
        let ran = checksRun().count
        let report = load.stop()
        print("canary health check failed: \(report.succeeded) requests, \(report.totalFailures) failed, \(ran) checks; reload said:\n\(text)")
        #expect(status == 1)
        #expect(
            text.contains(
                "rolled back: generation 2 failed (canary health check \"\(check)\" failed 3 times in a row: exited with status 1; its last output: unhealthy: database down)"
            ),
            "the reason quotes the check's last output: \(text)")
        #expect(alone.reloads.last?.result == .rolledBack)
        #expect(kill(canaryPid, 0) != 0, "the rolled back canary's worker is gone")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 0, "the load must actually have run")
        // No check runs after the rollback: five intervals later the count is the same.
        usleep(1_000_000)
        #expect(checksRun().count == ran, "no check after the rollback")
        #expect(baton.stop() == 0)
    }

    /// A health check that hangs is killed at the interval, with its process group, and
    /// counts as a failure: two in a row roll the canary back.
    @Test func aHealthCheckThatHangsIsKilledAndFails() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let pids = "\(scratch.path)/sleepers"
        let check = "exec:sleep 600 & echo $! >> \(pids); wait"
        try scratch.write(
            "baton.toml",
            serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: Self.workers)
                + Self.rolling + "canary_check = \"\(check)\"\ncanary_check_interval = \"300ms\"\ncanary_check_failures = 2\n")
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        let reload = try batonctl(["reload", "--canary", "1", "--wait-drained"], baton)
        let alone = try waitForAlone(1, baton)
        print("hanging check: reload said:\n\(reload.output)")
        #expect(reload.status == 1)
        #expect(reload.output.contains("canary health check \"\(check)\" failed 2 times in a row: did not finish within 300ms and was killed"))
        #expect(alone.reloads.last?.result == .rolledBack)
        let sleepers = ((try? String(contentsOfFile: pids, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
        #expect(sleepers.count >= 2)
        for sleeper in sleepers {
            // Killed with the check's group, and reaped by Baton, its subreaper.
            let gone = try baton.waitForStatus(timeout: 30, "the check's sleep \(sleeper) gone") { _ in kill(sleeper, 0) != 0 }
            #expect(gone.generations.count == 1)
        }
        #expect(baton.stop() == 0)
    }
}
