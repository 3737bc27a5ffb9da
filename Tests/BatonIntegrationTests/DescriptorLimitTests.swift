import BatonCore
import BatonLoad
import Foundation
import Testing

/// Many listeners against a low descriptor limit: Baton raises its soft limit to what the
/// configuration needs, or refuses the configuration naming the limit; it never runs out
/// of descriptors half-way (steering off, every reload rolled back).
@Suite(.serialized) struct DescriptorLimitTests {
    static let listeners = 150

    static func configuration() -> String {
        // One port on as many loopback addresses, so that no two listeners collide.
        let port = freePort()
        return (1...listeners).map { "[[listener]]\nname = \"l\($0)\"\naddress = \"tcp://127.0.3.\($0):\(port)\"\n" }.joined(separator: "\n")
            + """

            [workers]
            command = ["\(Products.path("baton-demo"))"]
            count = 1
            drain_timeout = "5s"

            """
    }

    /// Soft limit 256, hard 4096: the configuration needs more than 256, so Baton raises its
    /// soft limit; it serves with steering on and reloads.
    @Test func batonRaisesItsSoftLimitToWhatTheConfigurationNeeds() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration())
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch, launcher: ["/usr/bin/prlimit", "--nofile=256:4096", "--"])
        defer { baton.stop() }
        try baton.waitUntilServing()
        for generation in 2...3 {
            let reply = try baton.reload()
            #expect(reply.ok, "\(reply)")
            try baton.waitUntilServing(generation: generation)
        }
        #expect(!baton.log.contains("steering is off"), "\(baton.log)")
        #expect(!baton.log.contains("Too many open files"), "\(baton.log)")
        let limits = try String(contentsOfFile: "/proc/\(baton.process.processIdentifier)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let soft = try #require(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.flatMap { Int($0) })
        #expect(soft > 256, "\(line)")
        print("\(Self.listeners) listeners: soft limit raised to \(soft); 2 reloads")
        #expect(baton.stop() == 0)
    }

    /// Hard limit 256: Baton refuses to start, naming the limit and what it would need.
    @Test func aConfigurationBeyondTheHardLimitIsRefusedAtStart() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration())
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch, launcher: ["/usr/bin/prlimit", "--nofile=256:256", "--"])
        let status = baton.waitForExit(timeout: 60)
        #expect(status != 0)
        #expect(baton.log.contains("descriptor limit (RLIMIT_NOFILE) is 256"), "\(baton.log)")
        #expect(!baton.log.contains("CAP_BPF"), "\(baton.log)")
    }
}
