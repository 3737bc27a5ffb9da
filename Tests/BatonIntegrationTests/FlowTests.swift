import BatonCore
import Foundation
import Testing

/// `flows` on a UDP listener: a flow (remote address and port) stays with the
/// generation its first datagram went to while that generation's workers live, so a
/// protocol with per-flow state (Servers/flows/session_server.py) breaks no session
/// across reloads; with `flows = "none"` the same sessions break, which proves the
/// test sees it.
@Suite(.serialized) struct FlowTests {
    static let servers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Servers/flows").path

    /// What session_client.py saw.
    struct Sessions: Decodable {
        var sessions: Int
        var completed: Int
        var broken: [String]
        var lost: Int
        var pings: Int
        var straddled: Int
        var generations: [String]
    }

    /// Baton with the session server under `flows`, the session client running while
    /// `reloads` reloads happen one after another; returns what the client saw once the
    /// last replaced generation is gone.
    static func sessionsAcrossReloads(flows: String, reloads: Int) throws -> Sessions {
        let scratch = ScratchDirectory()
        let (baton, port) = try batonOnUDP(
            flows, listener: "sessions", server: "\(servers)/session_server.py", drainTimeout: "60s", in: scratch)
        let client = Process()
        let output = Pipe()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        client.arguments = ["\(servers)/session_client.py", "\(port)", "\(scratch.path)/stop"]
        client.standardOutput = output
        try client.run()
        defer { if client.isRunning { kill(client.processIdentifier, SIGKILL) } }
        for _ in 1...reloads {
            let reply = try baton.reload()
            guard reply.ok else { throw TestFailure("reload failed: \(reply)\n\(baton.log)") }
            guard flows != "none" else { continue }
            // The next reload once the new generation holds sessions of its own, so that
            // every generation has sessions open across the reload that replaces it.
            _ = try baton.waitForStatus("flows held by the serving generation") { status in
                guard let serving = status.generations.last(where: { $0.role == .serving })?.number else { return false }
                return (status.listeners.first?.sockets ?? []).filter { $0.generation == serving }.compactMap(\.flows).reduce(0, +) > 0
            }
        }
        try scratch.write("stop", "")
        let data = output.fileHandleForReading.readDataToEndOfFile()
        guard waitForExit(client, timeout: 60) == 0 else { throw TestFailure("the session client failed:\n\(baton.log)") }
        // Every replaced generation exits once its sessions ended, long before its drain timeout.
        _ = try baton.waitForStatus(timeout: 50, "the last replaced generation gone") { $0.generations.count == 1 }
        #expect(baton.stop() == 0)
        return try JSONDecoder().decode(Sessions.self, from: data)
    }

    @Test func tupleFlowsKeepEverySessionWithItsGenerationAcrossReloads() throws {
        let reloads = 20
        let seen = try Self.sessionsAcrossReloads(flows: "tuple", reloads: reloads)
        print("flows = tuple, \(reloads) reloads: \(seen)")
        #expect(seen.broken.isEmpty, "broken sessions: \(seen.broken)")
        #expect(seen.lost == 0, "\(seen.lost) sessions unanswered for 10 s")
        #expect(seen.straddled > reloads / 2, "sessions must have been open across reloads: \(seen)")
        #expect(seen.generations.count > reloads / 2, "many generations must have served sessions: \(seen.generations)")
    }

    @Test func withoutFlowsTheSameSessionsBreak() throws {
        let seen = try Self.sessionsAcrossReloads(flows: "none", reloads: 3)
        print("flows = none, 3 reloads: \(seen)")
        #expect(!seen.broken.isEmpty, "sessions open across a reload must break without flows: \(seen)")
    }

    /// Without CAP_BPF the program cannot load: `flows` other than `none` is a
    /// configuration error that says why, never a silent fallback.
    @Test func flowsWithoutCapBPFAreRefusedSayingWhy() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs root and setpriv to take CAP_BPF away")
            return
        }
        let scratch = ScratchDirectory()
        try scratch.write(
            "baton.toml",
            """
            [[listener]]
            name = "sessions"
            address = "udp://127.0.0.1:\(freePort())"
            flows = "tuple"

            [workers]
            command = ["python3", "\(Self.servers)/session_server.py"]
            """)
        let baton = try BatonUnderTest(
            ["--config", "baton.toml"], in: scratch,
            launcher: ["/usr/bin/setpriv", "--bounding-set", "-bpf,-sys_admin", "--inh-caps", "-bpf,-sys_admin", "--"])
        #expect(baton.waitForExit() != 0)
        #expect(
            baton.log.contains(#"listener sessions udp://127.0.0.1"#) && baton.log.contains(#"flows = "tuple" needs Baton's steering program"#)
                && baton.log.contains("Operation not permitted"),
            "\(baton.log)")
    }
}
