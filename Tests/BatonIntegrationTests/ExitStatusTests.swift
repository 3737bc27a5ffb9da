import BatonCore
import Foundation
import Testing

/// Every exit status that `baton` and `batonctl` document (Docs/command-line.md), each
/// provoked, so that a deploy script can rely on them (issue 24).
@Suite(.serialized) struct ExitStatusTests {
    static let configuration = """
        [workers]
        command = ["/bin/sleep", "1000"]
        count = 2
        readiness = "delay:50ms"
        drain_timeout = "5s"
        """

    /// Runs batonctl with these arguments; its exit status and output.
    static func batonctl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try run(Products.path("batonctl"), arguments)
    }

    @Test func batonExitsZeroWhenStopped78OnAnInvalidConfigurationAnd1WhenItCannotRun() throws {
        let scratch = ScratchDirectory()
        try scratch.write("bad.toml", Self.configuration.replacingOccurrences(of: "count = 2", with: "count = \"two\""))
        let invalid = try run(Products.path("baton"), ["--control", "\(scratch.path)/bad.sock", "--config", "\(scratch.path)/bad.toml"])
        #expect(invalid.status == 78, "\(invalid.output)")
        #expect(invalid.output.contains("workers.count = \"two\""), "\(invalid.output)")
        let usage = try run(Products.path("baton"), ["--workers", "2"])
        #expect(usage.status == 64, "\(usage.output)")
        // The first generation cannot start: a fatal error at run time.
        let failing = try run(
            Products.path("baton"),
            ["--control", "\(scratch.path)/failing.sock", "--listen", "http=tcp://127.0.0.1:0", "--", "/bin/sh", "-c", "exit 3"])
        #expect(failing.status == 1, "\(failing.output)")
        #expect(failing.output.contains("worker g1/s0 exited with status 3"), "\(failing.output)")
        try scratch.write("baton.toml", Self.configuration)
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        #expect(baton.stop() == 0)
    }

    @Test func batonCheckValidatesAFileOrTheCommandLineWithoutOpeningAnything() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let control = "\(scratch.path)/check.sock"
        try scratch.write("good.toml", serviceConfiguration(port: port, command: ["/bin/sleep", "1000"], workers: 2))
        let good = try run(Products.path("baton"), ["--check", "--control", control, "--config", "\(scratch.path)/good.toml"])
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("good.toml: valid (1 listener (http tcp://127.0.0.1:\(port)), 2 workers of /bin/sleep 1000)"), "\(good.output)")
        #expect(!FileManager.default.fileExists(atPath: control), "--check opened the control socket")
        // Nothing was bound: the port is still free for anyone.
        let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(probe) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0, "--check left the listener's port bound")

        try scratch.write("bad.toml", serviceConfiguration(port: port, command: ["/bin/sleep", "1000"], workers: 2) + "\nstop_delay = \"forever\"\n")
        let bad = try run(Products.path("baton"), ["--check", "--config", "\(scratch.path)/bad.toml"])
        #expect(bad.status == 78, "\(bad.output)")
        #expect(bad.output.contains("stop_delay"), "\(bad.output)")

        let oneLine = try run(Products.path("baton"), ["--check", "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "3", "--", "/bin/true"])
        #expect(oneLine.status == 0, "\(oneLine.output)")
        let badListener = try run(Products.path("baton"), ["--check", "--listen", "http=127.0.0.1:\(port)", "--", "/bin/true"])
        #expect(badListener.status == 78, "\(badListener.output)")
        #expect(badListener.output.contains("--listen = http=127.0.0.1:\(port)"), "\(badListener.output)")
    }

    @Test func batonctlTellsDoneRolledBackInvalidRefusedAndForbiddenApart() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration)
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        let socket = baton.controlSocket

        // Global options before the subcommand, as supervisorctl takes them.
        let done = try Self.batonctl(["-s", socket, "reload", "--wait"])
        #expect(done.status == 0, "\(done.output)")
        try baton.waitUntilServing(generation: 2)

        // An invalid file: refused with the configuration's status, waiting or not.
        try scratch.write("baton.toml", Self.configuration + "\ncount = 3\n")
        for wait in [[], ["--wait"]] {
            let invalid = try Self.batonctl(["reload", "-s", socket] + wait)
            #expect(invalid.status == 78, "\(wait): \(invalid.output)")
            #expect(invalid.output.contains("baton.toml"), "\(wait): \(invalid.output)")
        }
        #expect(try baton.status().generations.map(\.number) == [2])

        // A new generation that fails: rolled back.
        try scratch.write("baton.toml", Self.configuration.replacingOccurrences(of: #"["/bin/sleep", "1000"]"#, with: #"["/bin/sh", "-c", "exit 3"]"#))
        let rolledBack = try Self.batonctl(["reload", "--wait", "-s", socket])
        #expect(rolledBack.status == 1, "\(rolledBack.output)")
        #expect(rolledBack.output.contains("rolled back"), "\(rolledBack.output)")
        try scratch.write("baton.toml", Self.configuration)

        // Not now: no canary holds.
        let refused = try Self.batonctl(["promote", "-s", socket])
        #expect(refused.status == 75, "\(refused.output)")
        #expect(refused.output.contains("no canary holds"), "\(refused.output)")

        // Out of range, as Baton judges it.
        let invalidRequest = try Self.batonctl(["scale", "0", "-s", socket])
        #expect(invalidRequest.status == 64, "\(invalidRequest.output)")

        // Another user, whom the socket's mode keeps out.
        let forbidden = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Products.path("batonctl"), "-s", socket, "status"])
        #expect(forbidden.status == 77, "\(forbidden.output)")
        #expect(forbidden.output.contains("permission denied"), "\(forbidden.output)")

        #expect(try baton.status().generations.map(\.number) == [2])
        #expect(baton.stop() == 0)
        let unreachable = try Self.batonctl(["status", "-s", socket])
        #expect(unreachable.status == 69, "\(unreachable.output)")
    }

    @Test func batonctlTimesOutWith124WhenNothingAnswers() throws {
        let scratch = ScratchDirectory()
        // A socket that takes connections and never answers: a Baton that hangs.
        let path = "\(scratch.path)/mute.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0 && listen(listener, 8) == 0)
        let mute = try Self.batonctl(["--timeout", "0.5", "-s", path, "status"])
        #expect(mute.status == 124, "\(mute.output)")
        #expect(mute.output.contains("did not answer"), "\(mute.output)")
    }
}
