import BatonCore
import Foundation
import Testing

/// Sockets passed in by systemd's `LISTEN_FDS` protocol: adopted by name, checked
/// against the configuration, the rest reported and closed. A small launcher stands in
/// for systemd here (SystemdServiceTests runs the real one): it opens the sockets, puts
/// them at 3, 4, …, sets `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`, and execs baton.
@Suite(.serialized) struct SocketActivationTests {
    static let launcher = """
        import os, socket, sys
        count = int(sys.argv[1])
        specs, command = sys.argv[2:2 + count], sys.argv[2 + count:]
        sockets = []
        for spec in specs:
            name, address = spec.split("=", 1)
            if address.startswith("/"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(address)
            else:
                host, port = address.rsplit(":", 1)
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if name.endswith("+reuseport"):  # as ReusePort=yes in a socket unit
                    name = name.removesuffix("+reuseport")
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind((host, int(port)))
            s.listen(16)
            # Out of the way of 3, 4, … first.
            sockets.append((name, os.dup2(s.detach(), 100 + len(sockets), inheritable=False)))
        for index, (name, fd) in enumerate(sockets):
            os.dup2(fd, 3 + index, inheritable=True)
        os.environ.update(LISTEN_FDS=str(len(sockets)), LISTEN_PID=str(os.getpid()),
                          LISTEN_FDNAMES=":".join(name for name, _ in sockets))
        os.execv(command[0], command)
        """

    /// `baton` with `sockets` (name, address: HOST:PORT or a unix path) passed in.
    func activate(
        _ sockets: [(name: String, address: String)], baton arguments: [String],
        in scratch: ScratchDirectory
    ) throws -> BatonUnderTest {
        try scratch.write("launcher.py", Self.launcher)
        let specs = sockets.map { "\($0.name)=\($0.address)" }
        return try BatonUnderTest(
            arguments, in: scratch,
            launcher: ["/usr/bin/env", "python3", "\(scratch.path)/launcher.py", "\(specs.count)"] + specs)
    }

    @Test func namedSocketIsAdoptedAndTheRestIsReportedAndClosed() throws {
        let scratch = ScratchDirectory()
        let (http, extra) = (freePort(), freePort())
        let baton = try activate(
            [("http", "127.0.0.1:\(http)"), ("extra", "127.0.0.1:\(extra)")],
            baton: [
                "--listen", "http=tcp://127.0.0.1:\(http)", "--workers", "2", "--", Products.path("baton-demo"),
            ], in: scratch)
        let status = try baton.waitUntilServing()

        #expect(baton.log.contains("listener http tcp://127.0.0.1:\(http) adopted fd 3 from systemd"), "\(baton.log)")
        #expect(baton.log.contains("systemd passed fd 4 named extra (tcp://127.0.0.1:\(extra)), but no listener is named extra; closed it"), "\(baton.log)")
        // Without SO_REUSEPORT on the passed socket, per-worker becomes shared: a warning
        // that says steering is off and how to turn it on.
        let warning = baton.log.split(separator: "\n").first { $0.contains("is shared by every slot") }
        #expect(warning?.contains(" warning baton: ") == true, "\(baton.log)")
        #expect(
            warning?.contains("so steering is off for it") == true && warning?.contains("add ReusePort=yes to the socket unit") == true,
            "\(baton.log)")
        let listener = try #require(status.listeners.first)
        #expect(listener.reusePort == .shared && listener.sockets.count == 1, "\(status.listeners)")
        #expect(try run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(http)/"]).output.contains("generation=1"))
        #expect(
            try run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(extra)/"]).status == 7,
            "the unclaimed socket must be closed, so connecting to it is refused")
        #expect(baton.stop() == 0)
    }

    @Test func socketOfAnotherAddressIsRefused() throws {
        let scratch = ScratchDirectory()
        let (configured, passed) = (freePort(), freePort())
        let baton = try activate(
            [("http", "127.0.0.1:\(passed)")],
            baton: [
                "--listen", "http=tcp://127.0.0.1:\(configured)", "--", Products.path("baton-demo"),
            ], in: scratch)
        #expect(baton.waitForExit() != 0)
        #expect(
            baton.log.contains("listener http is tcp://127.0.0.1:\(configured), but the socket systemd passed as fd 3 named http is tcp://127.0.0.1:\(passed)"),
            "\(baton.log)")
        #expect(
            try run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(configured)/"]).status == 7,
            "nothing may be opened in its place")
    }

    @Test func socketOfAnotherKindIsRefused() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let socket = "\(scratch.path)/app.sock"
        let baton = try activate(
            [("admin", "127.0.0.1:\(port)"), ("http", socket)],
            baton: [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--", Products.path("baton-demo"),
            ], in: scratch)
        #expect(baton.waitForExit() != 0)
        #expect(baton.log.contains("but the socket systemd passed as fd 4 named http is unix://\(socket)"), "\(baton.log)")
    }

    @Test func socketWithReusePortGetsPerWorkerSiblings() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let baton = try activate(
            [("http+reuseport", "127.0.0.1:\(port)")],
            baton: [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "3", "--", Products.path("baton-demo"),
            ], in: scratch)
        let status = try baton.waitUntilServing()
        let listener = try #require(status.listeners.first)
        #expect(listener.reusePort == .perWorker && listener.sockets.map(\.slot) == [0, 1, 2], "\(status.listeners)")
        #expect(!baton.log.contains("shared by every slot"), "\(baton.log)")
        // Every slot answers: the kernel spreads new connections over the three sockets.
        var slots = Set<String>()
        for _ in 0..<200 where slots.count < 3 {
            let body = try run("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(port)/"]).output
            if let slot = body.split(separator: " ").first(where: { $0.hasPrefix("slot=") }) { slots.insert(String(slot)) }
        }
        #expect(slots.count == 3, "answered by \(slots)")
        #expect(baton.stop() == 0)
    }
}
