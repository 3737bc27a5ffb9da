import BatonCore
import Foundation
import Testing

/// QUIC (aioquic, Servers/quic) under Baton: with `flows = "quic"` every connection stays
/// with the generation it began with across reloads, migrating connections included,
/// and a ClientHello spread over two Initial packets completes whenever the swap comes;
/// new connections reach the newest generation. `tuple` keeps connections of a server
/// that knows nothing of cookies; `none` breaks them, which proves the test sees it.
@Suite(.serialized) struct QuicFlowTests {
    static let servers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Servers/quic").path

    /// What quic_client.py saw.
    struct Connections: Decodable {
        var connections: Int
        var broken: [String]
        var pings: Int
        var generations: [String]
        var migrations: Int
        var largeHandshakes: Int
        var failedHandshakes: [String]
    }

    struct Outcome {
        var connections: Connections
        /// After each reload: the serving generation, and the one that answered a new connection.
        var probes: [(serving: Int, answered: String)]
        /// The listener's status after the last reload, the client still running.
        var listener: StatusReport.ListenerStatus?

        /// Flows the table holds for generation 1's sockets, which are out of rotation.
        var firstGenerationFlows: UInt64 {
            (listener?.sockets ?? []).filter { $0.generation == 1 && $0.inRotation == false }.compactMap(\.flows).reduce(0, +)
        }

        /// Whether a connection began with another generation than the first.
        var generations: [String] { connections.generations }
    }

    /// The python3 on PATH, which has aioquic (`.ci/run` installs it).
    static let python = "/usr/bin/env"

    /// Runs the client while `reloads` reloads happen one after another (and, with
    /// `upgradeAfter`, a `batonctl upgrade` after that many), probing with a new connection
    /// after each.
    static func connectionsAcrossReloads(
        flows: String, reloads: Int, migrating: Int, upgradeAfter: Int? = nil, probing: Bool = true
    ) throws -> Outcome {
        let check = try run(python, ["python3", "-c", "import aioquic"])
        guard check.status == 0 else { throw TestFailure("aioquic is missing (.ci/run installs it): \(check.output)") }
        let scratch = ScratchDirectory()
        // A drain longer than the test: the first generation serves its connections to the end.
        let (baton, port) = try batonOnUDP(
            flows, listener: "quic", server: "\(servers)/quic_server.py", drainTimeout: "10m", in: scratch)
        let client = Process()
        let output = Pipe()
        client.executableURL = URL(fileURLWithPath: python)
        client.arguments = ["python3", "\(servers)/quic_client.py", "run", "\(port)", "\(scratch.path)/stop", "16", "\(migrating)"]
        client.standardOutput = output
        try client.run()
        defer { if client.isRunning { kill(client.processIdentifier, SIGKILL) } }
        // Every connection begins with generation 1.
        let connected = "\(scratch.path)/stop.connected"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: connected) {
            guard Date() < deadline, client.isRunning else { throw TestFailure("the QUIC client never connected:\n\(baton.log)") }
            usleep(50_000)
        }
        var probes: [(serving: Int, answered: String)] = []
        for reload in 1...reloads {
            if reload - 1 == upgradeAfter {
                let upgrade = try run(Products.path("batonctl"), ["upgrade", "-s", baton.controlSocket])
                guard upgrade.status == 0 else { throw TestFailure("upgrade failed: \(upgrade.output)\n\(baton.log)") }
                guard try baton.status().upgrades == 1 else { throw TestFailure("no upgrade counted:\n\(baton.log)") }
            }
            let reply = try baton.reload()
            guard reply.ok else { throw TestFailure("reload failed: \(reply)\n\(baton.log)") }
            guard probing else { continue }
            let serving = try baton.status().generations.last { $0.role == .serving }?.number ?? 0
            let probe = try run(python, ["python3", "\(servers)/quic_client.py", "probe", "\(port)"])
            probes.append((serving, probe.output.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let listener = try baton.status().listeners.first
        try scratch.write("stop", "")
        let data = output.fileHandleForReading.readDataToEndOfFile()
        guard waitForExit(client, timeout: 60) == 0 else { throw TestFailure("the QUIC client failed:\n\(baton.log)") }
        _ = try baton.waitForStatus(timeout: 50, "the last replaced generation gone") { $0.generations.count == 1 }
        #expect(baton.stop() == 0)
        return Outcome(connections: try JSONDecoder().decode(Connections.self, from: data), probes: probes, listener: listener)
    }

    @Test func quicFlowsKeepEveryConnectionWithItsGenerationAcrossReloads() throws {
        let reloads = 20
        let outcome = try Self.connectionsAcrossReloads(flows: "quic", reloads: reloads, migrating: 2)
        let seen = outcome.connections
        print("flows = quic, \(reloads) reloads: \(seen)")
        #expect(seen.connections == 16)
        #expect(seen.broken.isEmpty, "broken connections: \(seen.broken)")
        #expect(seen.generations == ["1"], "every connection began with generation 1 and stayed with it")
        #expect(seen.migrations > 0, "connections must have migrated: \(seen)")
        #expect(seen.failedHandshakes.isEmpty, "split ClientHellos failed: \(seen.failedHandshakes)")
        #expect(seen.largeHandshakes > reloads, "split ClientHellos must have run across the reloads: \(seen)")
        for probe in outcome.probes {
            #expect(probe.answered == "\(probe.serving)", "a new connection after a reload reaches the newest generation")
        }
        // Status: short headers went by cookie; the first Initials recorded flows for
        // generation 1's sockets, which take no new flows.
        #expect(outcome.listener?.flows == "quic")
        #expect((outcome.listener?.flowDecisions?.cookie ?? 0) > 0, "\(String(describing: outcome.listener))")
        #expect(outcome.firstGenerationFlows > 0, "\(String(describing: outcome.listener))")
    }

    @Test func tupleFlowsKeepConnectionsOfAServerWithoutCookies() throws {
        let reloads = 20
        let outcome = try Self.connectionsAcrossReloads(flows: "tuple", reloads: reloads, migrating: 0, probing: false)
        let seen = outcome.connections
        print("flows = tuple, \(reloads) reloads: \(seen)")
        #expect(seen.broken.isEmpty, "broken connections: \(seen.broken)")
        #expect((outcome.listener?.flowDecisions?.flow ?? 0) > 0, "\(String(describing: outcome.listener))")
        #expect((outcome.listener?.flowDecisions?.cookie ?? 1) == 0, "no cookies under tuple")
        #expect(seen.failedHandshakes.isEmpty, "split ClientHellos failed: \(seen.failedHandshakes)")
    }

    /// `batonctl upgrade` (while one generation serves alone, as an upgrade requires) hands
    /// the flow table and the cookies over with the program: no connection breaks across
    /// it, nor across the reloads after it.
    @Test func anUpgradeUnderQuicLoadBreaksNoConnection() throws {
        let outcome = try Self.connectionsAcrossReloads(flows: "quic", reloads: 6, migrating: 2, upgradeAfter: 0)
        let seen = outcome.connections
        print("flows = quic, an upgrade then 6 reloads: \(seen)")
        #expect(seen.broken.isEmpty, "broken connections: \(seen.broken)")
        #expect(seen.failedHandshakes.isEmpty, "split ClientHellos failed: \(seen.failedHandshakes)")
        for probe in outcome.probes {
            #expect(probe.answered == "\(probe.serving)", "a new connection after a reload reaches the newest generation")
        }
    }

    @Test func withoutFlowsQuicConnectionsBreak() throws {
        let seen = try Self.connectionsAcrossReloads(flows: "none", reloads: 3, migrating: 0, probing: false).connections
        print("flows = none, 3 reloads: \(seen)")
        #expect(!seen.broken.isEmpty, "connections open across a reload must break without flows: \(seen)")
    }
}
