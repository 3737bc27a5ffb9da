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

    /// Reads Baton's children (every thread's `children` list) over and over in the
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
            return pids
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
}
