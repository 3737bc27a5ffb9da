import BatonCore
import BatonLoad
import Foundation
import Testing

/// Issue 23: reloads while keep-alive clients keep both cores busy. A worker busy with
/// keep-alive clients never looks idle, so a leaving generation must get its drain signal
/// from what its connections show (queues empty, every connection it took answered), not
/// at the end of its `drain_grace`, and still lose nothing, with a server whose shutdown
/// drops what it accepted too.
@Suite(.serialized) struct SaturatedReloadTests {
    /// Long enough that no reload here could end by it: a generation that reaches it is
    /// logged, and fails the test.
    static let drainGrace = "60s"

    func startBaton(_ command: [String], in scratch: ScratchDirectory) throws -> (BatonUnderTest, Int) {
        let port = freePort()
        try scratch.write(
            "baton-\(port).toml",
            """
            [[listener]]
            name = "http"
            address = "tcp://127.0.0.1:\(port)"

            [workers]
            command = [\(command.map { "\"\($0)\"" }.joined(separator: ", "))]
            count = 2
            drain_timeout = "10s"
            drain_grace = "\(Self.drainGrace)"
            """)
        let baton = try BatonUnderTest(["--config", "baton-\(port).toml"], in: scratch, controlSocket: "\(scratch.path)/\(port).sock")
        try baton.waitUntilServing()
        if baton.log.contains("steering is off") {
            throw TestFailure("steering is off on this machine, so a leaving generation's sockets cannot be watched: \(baton.log)")
        }
        return (baton, port)
    }

    func startLoad(_ port: Int, _ mode: ConnectionMode, clients: Int) -> LoadGenerator {
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.mode = mode
        configuration.clients = clients
        let load = LoadGenerator(configuration)
        load.start()
        return load
    }

    /// 20 reloads all at once, then 5 rolling ones a slot at a time, each waited for.
    func reload(_ baton: BatonUnderTest) throws {
        for _ in 1...20 {
            let reply = try baton.reload()
            #expect(reply.ok, "\(reply)")
        }
        for _ in 1...5 {
            let reply = try ControlClient.send(
                ControlRequest(command: .reload, wait: true, strategy: "rolling", batch: 1), to: baton.controlSocket)
            #expect(reply.ok, "\(reply)")
        }
        _ = try baton.waitForStatus(timeout: 120, "the last replaced generation gone") { $0.generations.count == 1 }
        #expect(
            !baton.log.contains("drain_grace ended"),
            "every leaving generation and departing worker must drain on evidence, not at drain_grace: \(baton.log)")
    }

    func expectNothingLost(_ report: LoadReport, _ what: String) {
        #expect(report.totalFailures == 0, "\(what): \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 100, "\(what): the load must actually have run")
        print("\(what): \(report.succeeded) answered, \(report.totalFailures) failed")
    }

    /// A server that drains well: keep-alive clients keep both cores busy on it, and
    /// clients with a new connection per request come alongside.
    @Test func aWellBehavedServerUnderKeepAliveLoadLosesNothing() throws {
        let scratch = ScratchDirectory()
        let (baton, port) = try startBaton([Products.path("baton-demo")], in: scratch)
        let keepAlive = startLoad(port, .keepAlive, clients: 24)
        let newConnections = startLoad(port, .newConnection, clients: 8)
        try reload(baton)
        expectNothingLost(keepAlive.stop(), "keep-alive clients")
        expectNothingLost(newConnections.stop(), "new-connection clients")
        #expect(baton.stop() == 0)
    }

    /// A server that exits at once on its drain signal, dropping what it accepted and has
    /// not answered, with its workers busy all along: each of its connections carries one
    /// request, which it must have answered before the signal. Keep-alive connections
    /// cannot survive such a server's exit whenever it comes (their next request dies
    /// with it), so the keep-alive clients that saturate the machine load a well-behaved
    /// server beside it.
    @Test func aRudeServerOnASaturatedMachineLosesNothing() throws {
        let scratch = ScratchDirectory()
        let (neighbour, neighbourPort) = try startBaton([Products.path("baton-demo")], in: scratch)
        let (baton, port) = try startBaton([Products.path("baton-demo"), "--rude-drain"], in: scratch)
        let keepAlive = startLoad(neighbourPort, .keepAlive, clients: 24)
        let newConnections = startLoad(port, .newConnection, clients: 16)
        try reload(baton)
        expectNothingLost(newConnections.stop(), "new-connection clients of the rude server")
        expectNothingLost(keepAlive.stop(), "keep-alive clients of the server beside it")
        #expect(baton.stop() == 0)
        #expect(neighbour.stop() == 0)
    }
}
