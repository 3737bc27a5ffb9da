import BatonLoad
import Foundation
import Testing

/// The Hummingbird example, built on BatonWorker, as a Baton worker, under plain systemd
/// socket activation, and on its own.
@Suite(.serialized) struct HummingbirdWorkerTests {
    static let example = Products.path("baton-hummingbird-example")
    static let reloads = 25

    /// New connections and keep-alive clients hammer `/`, while other clients keep slow
    /// requests in flight, so that every drain finds some to finish: across the reloads
    /// not one request may fail.
    @Test(arguments: [ConnectionMode.newConnection, .keepAlive])
    func noRequestIsLostAcrossReloads(_ mode: ConnectionMode) throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--drain-timeout", "10s",
                "--", Self.example,
            ], in: scratch)
        try baton.waitUntilServing()

        var fast = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        fast.mode = mode
        fast.clients = 8
        var slow = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        slow.mode = mode
        slow.clients = 4
        slow.path = "/sleep?ms=300"
        let fastLoad = LoadGenerator(fast)
        let slowLoad = LoadGenerator(slow)
        fastLoad.start()
        slowLoad.start()
        let replies = try (1...Self.reloads).map { _ in try baton.reload() }
        let fastReport = fastLoad.stop()
        let slowReport = slowLoad.stop()

        #expect(replies.allSatisfy { $0.ok }, "every reload must take over: \(replies.filter { !$0.ok })")
        #expect(replies.last?.generation == Self.reloads + 1)
        #expect(fastReport.totalFailures == 0, "failures: \(fastReport.failures) \(fastReport.failureSamples)")
        #expect(slowReport.totalFailures == 0, "slow requests lost: \(slowReport.failures) \(slowReport.failureSamples)")
        #expect(fastReport.succeeded > Self.reloads, "the load must actually have run")
        #expect(slowReport.succeeded >= slow.clients, "slow requests must have completed")
        #expect(fastReport.distinctResponders > 2, "several generations must have answered")
        #expect(baton.stop() == 0)
        #expect(!baton.log.contains("Fatal error"), "\(baton.log)")
    }

    /// systemd's own socket activation (`systemd-socket-activate` passes a named socket
    /// by `LISTEN_FDS` and execs the server, as PID 1 does for a socket unit).
    @Test func servesUnderSystemdSocketActivation() throws {
        let port = freePort()
        let worker = try ExampleProcess(
            "/usr/bin/systemd-socket-activate",
            [
                "--listen=127.0.0.1:\(port)", "--fdname=http", Self.example,
            ])
        // It starts the server on the first connection, which the server then answers.
        let responder = try worker.waitForAnswer(port: port)
        #expect(responder == "\(worker.process.processIdentifier)", "the server itself, exec'd with the socket, answers")
        #expect(worker.stop() == 0, "a drain ends with exit 0: \(worker.output)")
    }

    @Test func wrongListenerNameIsAClearError() throws {
        let port = freePort()
        let worker = try ExampleProcess(
            "/usr/bin/systemd-socket-activate",
            [
                "--listen=127.0.0.1:\(port)", "--fdname=admin", Self.example,
            ])
        // systemd-socket-activate starts the server on the first connection.
        let deadline = Date().addingTimeInterval(30)
        while worker.process.isRunning && Date() < deadline {
            #expect(LoadTarget.tcp(host: "127.0.0.1", port: port).responder() == nil)
            usleep(20_000)
        }
        #expect(worker.waitForExit() == 1)
        #expect(worker.output.contains("no inherited listener named 'http' (have: admin"), "\(worker.output)")
    }

    @Test func descriptorsMeantForAnotherProcessAreAClearError() throws {
        let worker = try ExampleProcess(Self.example, [], environment: ["LISTEN_FDS": "1", "LISTEN_PID": "1", "LISTEN_FDNAMES": "http"])
        #expect(worker.waitForExit() == 1)
        #expect(worker.output.contains("LISTEN_PID is 1 but this process is \(worker.process.processIdentifier)"), "\(worker.output)")
    }

    /// Without inherited sockets, it binds the address it is given; it tells
    /// `NOTIFY_SOCKET` when it is ready and when it begins to drain.
    @Test func standaloneBindsItsOwnAddressAndNotifies() throws {
        let scratch = ScratchDirectory()
        let receiver = try SystemdNotifyTests.NotifyReceiver(path: "\(scratch.path)/notify.sock")
        let port = freePort()
        let worker = try ExampleProcess(Self.example, ["--listen", "127.0.0.1:\(port)"], environment: ["NOTIFY_SOCKET": receiver.path])
        let responder = try worker.waitForAnswer(port: port)
        #expect(responder == "\(worker.process.processIdentifier)")
        #expect(receiver.receive() == ["READY=1\nSTATUS=serving on http (127.0.0.1:\(port))"])
        #expect(worker.stop() == 0, "\(worker.output)")
        #expect(receiver.receive() == ["STOPPING=1\nSTATUS=draining"])
    }
}

/// The example run directly by a test, its output collected, stopped by pid.
final class ExampleProcess {
    let process = Process()
    private let outputPath = NSTemporaryDirectory() + "baton-example-" + UUID().uuidString.prefix(8) + ".log"

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        var inherited = ProcessInfo.processInfo.environment
        for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "SERVER_STARTER_PORT"] {
            inherited[name] = nil
        }
        process.environment = inherited.merging(environment) { $1 }
        try process.run()
    }

    var output: String {
        (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }

    /// The `X-Pid` of the first answer to `GET /` (bounded wait).
    func waitForAnswer(port: Int, timeout: Double = 30) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard process.isRunning else { throw TestFailure("exited (\(process.terminationStatus)): \(output)") }
            if let responder = LoadTarget.tcp(host: "127.0.0.1", port: port).responder() { return responder }
            usleep(20_000)
        }
        throw TestFailure("no answer on port \(port) within \(timeout)s: \(output)")
    }

    /// SIGTERM, the drain signal; then the exit status.
    func stop() -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        return waitForExit()
    }

    func waitForExit(timeout: Double = 30) -> Int32 {
        BatonIntegrationTests.waitForExit(process, timeout: timeout)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: outputPath)
    }
}
