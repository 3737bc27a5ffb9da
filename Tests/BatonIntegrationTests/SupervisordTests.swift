import BatonCore
import BatonLoad
import Foundation
import Testing

extension ReloadUnderLoadTests {
    /// Baton as a supervisord program, with `Units/supervisord-baton.conf` as shipped
    /// (paths and port filled in), under Debian's supervisord (installed by `.ci/run`):
    /// `supervisorctl signal HUP` reloads under load losing nothing, `supervisorctl stop`
    /// drains and answers the request in flight, `supervisorctl status` follows Baton.
    /// Nested in the serialized ``ReloadUnderLoadTests`` so that no two load tests share
    /// the CPU.
    @Suite(
        .serialized,
        .enabled(
            if: SupervisordUnderTest.unavailableReason == nil,
            "needs /usr/bin/supervisord and supervisorctl (apt-get install supervisor)"))
    struct SupervisordTests {
        static let reloads = 20

        /// supervisord started, Baton RUNNING and its first generation serving.
        func started(in scratch: ScratchDirectory) throws -> SupervisordUnderTest {
            let supervisord = try SupervisordUnderTest(in: scratch)
            try supervisord.waitForState("RUNNING")
            let status = try supervisord.waitUntilServing(generation: 1)
            #expect(
                try supervisord.programPID() == status.pid,
                "supervisord must watch Baton itself, in the foreground")
            return supervisord
        }

        @Test(arguments: [ConnectionMode.newConnection, .keepAlive])
        func signalHUPReloadsUnderLoadLosingNothing(_ mode: ConnectionMode) throws {
            let scratch = ScratchDirectory()
            let supervisord = try started(in: scratch)
            let batonPID = try supervisord.programPID()
            var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: supervisord.port))
            configuration.mode = mode
            configuration.clients = 8
            let load = LoadGenerator(configuration)
            load.start()
            var signalled: [String] = []
            for generation in 2...(Self.reloads + 1) {
                load.markEvent("reload-start")
                signalled.append(try supervisord.control("signal", "HUP", SupervisordUnderTest.program).output)
                // Baton's own account of the reload, not a guess at how long it takes.
                let status = try supervisord.waitForStatus("reload to generation \(generation)") { status in
                    status.reloads.last?.generation == generation && status.reloads.last?.result != .running
                }
                load.markEvent("reload-end")
                #expect(status.reloads.last?.result == .tookOver, "\(String(describing: status.reloads.last))")
                try supervisord.waitUntilServing(generation: generation)
            }
            let report = load.stop()
            print("supervisorctl signal HUP, \(mode.rawValue): \(Self.reloads) reloads, \(report.succeeded) requests, \(report.totalFailures) failed")
            #expect(signalled.allSatisfy { $0.contains("signalled") }, "\(signalled)")
            #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)\n\(supervisord.logs)")
            #expect(report.succeeded > Self.reloads, "the load must actually have run")
            #expect(report.distinctResponders > 2, "several generations must have answered")
            // A reload is Baton's own business: supervisord saw nothing happen.
            #expect(try supervisord.state() == "RUNNING")
            #expect(try supervisord.programPID() == batonPID)
            #expect(supervisord.shutdown() == 0)
        }

        @Test func stopDrainsAndAnswersTheRequestInFlight() throws {
            let scratch = ScratchDirectory()
            let supervisord = try started(in: scratch)
            let workers = try supervisord.status().generations.flatMap(\.workers).compactMap(\.pid)
            let slow = try RequestInFlight(port: supervisord.port, path: "/sleep?ms=3000")
            // In a worker's hands: nothing left in any accept queue.
            try supervisord.waitForStatus("the slow request accepted") { status in
                status.listeners.flatMap(\.sockets).allSatisfy { ($0.queued ?? 0) == 0 }
            }
            let stop = try supervisord.control("stop", SupervisordUnderTest.program)
            let response = slow.response()
            #expect(stop.status == 0 && stop.output.contains("stopped"), "\(stop.output)\n\(supervisord.logs)")
            #expect(response.hasPrefix("HTTP/1.1 200"), "the request in flight must be answered: \(response)\n\(supervisord.logs)")
            #expect(try supervisord.state() == "STOPPED")
            #expect(
                supervisord.supervisordLog.contains("stopped: \(SupervisordUnderTest.program) (exit status 0)"),
                "Baton must exit 0 after draining:\n\(supervisord.logs)")
            #expect(workers.allSatisfy { kill($0, 0) != 0 }, "every worker must be gone with Baton")
            #expect(try LoadTarget.tcp(host: "127.0.0.1", port: supervisord.port).responder() == nil, "the port must be closed")

            // And started again: a new Baton, generation 1 again.
            #expect(try supervisord.control("start", SupervisordUnderTest.program).status == 0)
            try supervisord.waitForState("RUNNING")
            let status = try supervisord.waitUntilServing(generation: 1)
            #expect(try supervisord.programPID() == status.pid)
            #expect(supervisord.shutdown() == 0)
        }
    }
}
