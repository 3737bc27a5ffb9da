import BatonCore
import BatonLoad
import Foundation
import Testing

/// What deploy scripts and orchestrators chain (issue 24): waits that return at the step
/// a script needs, `/ready`, `stop_delay` and `stop --wait`.
@Suite(.serialized) struct OrchestrationTests {
    static func batonctl(_ arguments: [String], _ baton: BatonUnderTest) throws -> (status: Int32, output: String) {
        try run(Products.path("batonctl"), arguments + ["-s", baton.controlSocket])
    }

    /// batonctl started in the background; its output is read once it exits.
    static func startBatonctl(_ arguments: [String], _ baton: BatonUnderTest) throws -> (Process, Pipe) {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: Products.path("batonctl"))
        process.arguments = arguments + ["-s", baton.controlSocket]
        process.standardOutput = output
        try process.run()
        return (process, output)
    }

    @Test func aCanaryWaitReturnsWhileItHoldsAndPromoteAndRollbackWaitForTheirOutcome() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write(
            "baton.toml", serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 3) + "\ndrain_grace = \"1s\"\n")
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()

        let canary = try Self.batonctl(["reload", "--canary", "1", "--wait"], baton)
        #expect(canary.status == 0, "\(canary.output)")
        #expect(canary.output.contains("canary: generation 2 (slot 0) takes about 10% of new connections"), "\(canary.output)")
        let holding = try baton.status()
        #expect(holding.rollout?.canary?.slots == [0], "the canary holds its share when --wait returns")
        #expect(holding.generations.first { $0.number == 2 }?.workers.allSatisfy { $0.state == .ready } == true)

        let promoted = try Self.batonctl(["promote", "--wait"], baton)
        #expect(promoted.status == 0, "\(promoted.output)")
        let alone = try baton.status()
        #expect(alone.rollout == nil)
        #expect(alone.generations.first { $0.role == .serving }?.number == 2)
        let inRotation = alone.listeners.flatMap(\.sockets).filter { $0.inRotation == true }
        #expect(!inRotation.isEmpty && inRotation.allSatisfy { $0.generation == 2 }, "only generation 2 takes new connections")

        // A canary can start only once generation 1 is gone.
        _ = try baton.waitForStatus(timeout: 60, "generation 2 alone") { $0.generations.map(\.number) == [2] }
        #expect(try Self.batonctl(["reload", "--canary", "1", "--wait"], baton).status == 0)
        let rolledBack = try Self.batonctl(["rollback", "--wait-drained"], baton)
        #expect(rolledBack.status == 0, "\(rolledBack.output)")
        #expect(rolledBack.output.contains("generation 3 has exited"), "\(rolledBack.output)")
        #expect(try baton.status().generations.map(\.number) == [2], "the rolled back canary's workers are gone")
        #expect(baton.stop() == 0)
    }

    @Test func scaleWaitDrainedReturnsOnceTheOldGenerationIsGoneSoThatUpgradeRuns() throws {
        let scratch = ScratchDirectory()
        let flag = "\(scratch.path)/may-exit"
        // Workers that, told to drain, exit only once the flag file exists.
        let worker = "trap 'while [ ! -e \(flag) ]; do sleep 0.05; done; exit 0' TERM; while :; do sleep 0.2; done"
        try scratch.write(
            "baton.toml",
            """
            [workers]
            command = ["/bin/sh", "-c", "\(worker)"]
            count = 2
            readiness = "delay:50ms"
            drain_timeout = "5m"
            """)
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()

        #expect(try Self.batonctl(["scale", "3", "--wait"], baton).status == 0)
        let refused = try Self.batonctl(["upgrade"], baton)
        #expect(refused.status == 75, "\(refused.output)")
        #expect(refused.output.contains("once generation 1 has exited"), "\(refused.output)")
        #expect(refused.output.contains("--wait-drained"), "\(refused.output)")
        try "".write(toFile: flag, atomically: true, encoding: .utf8)
        _ = try baton.waitForStatus(timeout: 60, "generation 2 alone") { $0.generations.map(\.number) == [2] }
        try FileManager.default.removeItem(atPath: flag)

        let (scale, output) = try Self.startBatonctl(["scale", "2", "--wait-drained"], baton)
        _ = try baton.waitForStatus(timeout: 60, "generation 3 serving, generation 2 draining") { status in
            status.generations.first { $0.role == .serving }?.number == 3 && status.generations.contains { $0.number == 2 }
        }
        #expect(scale.isRunning, "scale --wait-drained returned while generation 2 still drains")
        try "".write(toFile: flag, atomically: true, encoding: .utf8)
        #expect(waitForExit(scale, timeout: 60) == 0)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("generation 2 has exited"), "\(text)")
        #expect(try baton.status().generations.map(\.number) == [3])
        let upgrade = try Self.batonctl(["upgrade"], baton)
        #expect(upgrade.status == 0, "\(upgrade.output)\n\(baton.log)")
        #expect(baton.stop() == 0)
    }

    @Test func readyTurns503AtSIGTERMWhileTheWorkersServeOnForTheStopDelay() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let metricsPort = freePort()
        try scratch.write(
            "baton.toml",
            "metrics = \"tcp://127.0.0.1:\(metricsPort)\"\nstop_delay = \"10m\"\n\n"
                + serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 2))
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        let ready = "http://127.0.0.1:\(metricsPort)/ready"
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", ready]) == "200")

        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 4
        let load = LoadGenerator(configuration)
        load.start()
        kill(baton.process.processIdentifier, SIGTERM)
        _ = try baton.waitForStatus(timeout: 30, "/ready at 503") { _ in
            (try? curl(["-o", "/dev/null", "-w", "%{http_code}", ready])) == "503"
        }
        for _ in 0..<20 {
            #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/"]) == "200")
        }
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", ready]) == "503")
        let delaying = try baton.status()
        #expect(delaying.phase == .running, "the stop_delay runs: nothing drains yet")
        #expect(delaying.generations.count == 1 && delaying.generations[0].workers.allSatisfy { $0.state == .ready })
        #expect(baton.log.contains("stopping in 600s (stop_delay)"), "\(baton.log)")
        let report = load.stop()
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        // A second SIGTERM ends the delay: the drain begins.
        #expect(baton.stop() == 0)
    }

    @Test func stopWaitReturnsOnceEveryWorkerHasExitedAfterTheStopDelay() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write(
            "baton.toml",
            "stop_delay = \"1s\"\n\n" + serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 2))
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        let serving = try baton.waitUntilServing()
        let pids = serving.generations.flatMap(\.workers).compactMap(\.pid)
        #expect(pids.count == 2)
        let stop = try Self.batonctl(["stop", "--wait"], baton)
        #expect(stop.status == 0, "\(stop.output)")
        #expect(stop.output.contains("the workers serve for 1s more (stop_delay), then drain"), "\(stop.output)")
        #expect(stop.output.contains("every worker has exited"), "\(stop.output)")
        for pid in pids {
            #expect(kill(pid, 0) != 0, "worker \(pid) is gone when stop --wait returns")
        }
        #expect(baton.waitForExit() == 0)
    }
}
