import BatonCore
import BatonLoad
import Foundation
import Synchronization
import Testing

/// The product's promise: reloads under load lose no request.
@Suite(.serialized) struct ReloadUnderLoadTests {
    static let reloads = 50

    /// `baton-demo` under Baton with `workers` workers on a fresh port.
    func startDemo(workers: Int, in scratch: ScratchDirectory, extra: [String] = []) throws -> (BatonUnderTest, Int) {
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "\(workers)", "--drain-timeout", "10s",
            ] + extra + ["--", Products.path("baton-demo")], in: scratch)
        try baton.waitUntilServing()
        return (baton, port)
    }

    func reloadRepeatedly(_ baton: BatonUnderTest, load: LoadGenerator) throws -> [ControlReply] {
        try (1...Self.reloads).map { _ in
            load.markEvent("reload-start")
            let reply = try baton.reload()
            load.markEvent("reload-end")
            return reply
        }
    }

    func expectNoFailures(_ report: LoadReport) {
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > Self.reloads, "the load must actually have run")
        #expect(report.distinctResponders > 2, "several generations must have answered")
    }

    /// New connections for every request, and keep-alive clients sending back to back,
    /// where no request may be lost on a connection the server closed.
    @Test(arguments: [ConnectionMode.newConnection, .keepAlive])
    func noRequestIsLostAcrossReloads(_ mode: ConnectionMode) throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(workers: 4, in: scratch)
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.mode = mode
        configuration.clients = 16
        let load = LoadGenerator(configuration)
        load.start()
        let replies = try reloadRepeatedly(baton, load: load)
        let report = load.stop()
        #expect(replies.allSatisfy { $0.ok }, "every reload must take over: \(replies.filter { !$0.ok })")
        #expect(replies.last?.generation == Self.reloads + 1)
        expectNoFailures(report)
        #expect(baton.stop() == 0)
    }

    /// Slots come and go under load: their sockets close with their queued connections
    /// moved to a sibling, so nothing is reset.
    @Test func scalingUpAndDownUnderLoadLosesNoRequest() throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(workers: 4, in: scratch)
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 16
        let load = LoadGenerator(configuration)
        load.start()
        var outputs: [(Int32, String)] = []
        for count in [1, 4, 2, 6, 1, 3, 1, 4, 2, 6] {
            outputs.append(try run(Products.path("batonctl"), ["scale", "\(count)", "--wait", "-s", baton.controlSocket]))
        }
        let report = load.stop()
        #expect(outputs.allSatisfy { $0.0 == 0 }, "\(outputs.filter { $0.0 != 0 })")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 100, "the load must actually have run")
        // Once the replaced generation has drained, only generation 11's own sockets are left.
        let status = try baton.waitForStatus("one generation left") { $0.generations.count == 1 }
        #expect(status.listeners.first?.sockets.count == 6, "the last generation's six slots")
        #expect(status.generations.last?.workers.count == 6)
        #expect(baton.stop() == 0)
    }

    /// Open-loop load: requests go out on schedule whatever the server does.
    @Test func openLoopLoadAcrossReloads() throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(workers: 2, in: scratch)
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 8
        configuration.rate = 400
        let load = LoadGenerator(configuration)
        load.start()
        let replies = try (1...20).map { _ in try baton.reload() }
        let report = load.stop()
        #expect(replies.allSatisfy { $0.ok })
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 0)
        #expect(baton.stop() == 0)
    }

    /// The load generator can see the problem Baton solves: the same server, reloaded
    /// the naive way (new SO_REUSEPORT sockets, then the old ones close while
    /// connections wait in their queues), loses requests.
    @Test func loadGeneratorSeesTheNaiveReloadFail() throws {
        let port = freePort()
        func startDemo() throws -> Process {
            let process = Process()
            let errors = Pipe()
            process.executableURL = URL(fileURLWithPath: Products.path("baton-demo"))
            process.arguments = ["--listen", "127.0.0.1:\(port)", "--reuseport", "--drain-pause-ms", "10"]
            process.standardError = errors
            try process.run()
            // It logs "serving on" once its socket is listening and accepting.
            var seen = ""
            while !seen.contains("serving on") {
                let data = errors.fileHandleForReading.availableData
                guard !data.isEmpty else { throw TestFailure("baton-demo exited before serving: \(seen)") }
                seen += String(decoding: data, as: UTF8.self)
            }
            return process
        }
        var serving = try startDemo()
        defer { kill(serving.processIdentifier, SIGKILL) }
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 16
        let load = LoadGenerator(configuration)
        load.start()
        for _ in 1...20 {
            let next = try startDemo()
            kill(serving.processIdentifier, SIGTERM)
            serving.waitUntilExit()
            serving = next
        }
        let report = load.stop()
        kill(serving.processIdentifier, SIGTERM)
        serving.waitUntilExit()
        #expect(report.succeeded > 0)
        #expect((report.failures[.reset] ?? 0) > 0, "the naive reload resets queued connections: \(report.failures)")
    }

    @Test func slowRequestsInFlightFinishDuringTheDrain() throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startDemo(workers: 2, in: scratch)
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.path = "/sleep?ms=300"
        configuration.clients = 8
        let load = LoadGenerator(configuration)
        load.start()
        let replies = try (1...10).map { _ in try baton.reload() }
        let report = load.stop()
        #expect(replies.allSatisfy { $0.ok })
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded >= 8)
        #expect(baton.stop() == 0)
    }

    @Test func failingNewVersionRollsBackWhileTheOldOneServes() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        func configuration(_ command: [String], readyTimeout: String = "30s") -> String {
            serviceConfiguration(port: port, command: command, workers: 3, readyTimeout: readyTimeout)
        }
        try scratch.write("baton.toml", configuration([Products.path("baton-demo")]))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        var loadConfiguration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        loadConfiguration.clients = 8
        let load = LoadGenerator(loadConfiguration)
        load.start()

        // A version that never says it is ready.
        try scratch.write("baton.toml", configuration([Products.path("baton-demo"), "--never-ready"], readyTimeout: "1s"))
        let neverReady = try run(Products.path("batonctl"), ["reload", "--wait", "-s", baton.controlSocket])
        #expect(neverReady.status != 0)
        #expect(neverReady.output.contains("rolled back"))
        #expect(neverReady.output.contains("was not ready within 1s"))

        // A version that crashes at start.
        try scratch.write("baton.toml", configuration([Products.path("baton-demo"), "--exit-at-start", "3"]))
        let crashing = try run(Products.path("batonctl"), ["reload", "--wait", "-s", baton.controlSocket])
        #expect(crashing.status != 0)
        #expect(crashing.output.contains("exited with status 3 before it was ready"))

        // Back to a good version: it takes over.
        try scratch.write("baton.toml", configuration([Products.path("baton-demo")]))
        let good = try baton.reload()
        let report = load.stop()
        #expect(good.ok, "\(good)")

        let status = try baton.status()
        #expect(status.reloads.map(\.result) == [.rolledBack, .rolledBack, .tookOver])
        #expect(status.generations.last { $0.role == .serving }?.number == good.generation)
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 0)
        #expect(baton.stop() == 0)
    }

    @Test func reloadsAskedAtOnceCollapseAndAllSucceed() throws {
        let scratch = ScratchDirectory()
        // Workers slow to get ready keep the first reload running while the others arrive,
        // however busy the machine is.
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "2",
                "--", Products.path("baton-demo"), "--ready-delay-ms", "1000",
            ], in: scratch)
        try baton.waitUntilServing()
        let replies = Mutex<[ControlReply]>([])
        let controlSocket = baton.controlSocket
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            if let reply = try? ControlClient.send(ControlRequest(command: .reload, wait: true), to: controlSocket) {
                replies.withLock { $0.append(reply) }
            }
        }
        let all = replies.withLock { $0 }
        #expect(all.count == 6 && all.allSatisfy { $0.ok })
        let generations = Set(all.compactMap(\.generation))
        #expect(generations.count < 6, "concurrent requests must collapse into fewer reloads, got \(generations.sorted())")
        let status = try baton.status()
        #expect(status.generations.count <= 2)
        #expect(baton.stop() == 0)
    }
}
