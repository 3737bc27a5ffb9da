import BatonLoad
import Foundation
import Testing

/// Servers of a few lines written the way the Go and Node.js communities write them
/// (`Servers/go/server.go`, `Servers/node/server.js`), with Debian's Go and Node.js
/// (installed by `.ci/run`): each takes the socket at fd 3, says `READY=1`, and drains on
/// `SIGTERM`, under load across reloads with new connections and with keep-alive clients.
extension ReloadUnderLoadTests.ThirdPartyServerTests {
    static let servers = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Servers").path
    static let go = "/usr/bin/go"
    static let node = "/usr/bin/node"
    /// What the Node.js server sends `READY=1` with.
    static let systemdNotify = "/usr/bin/systemd-notify"

    /// A static build of `Servers/go/server.go` in `scratch`, with its own Go caches there,
    /// so that it needs no network and nothing of the user's.
    func buildGoServer(in scratch: ScratchDirectory) throws -> String {
        let output = "\(scratch.path)/go-server"
        let build = Process()
        let pipe = Pipe()
        build.executableURL = URL(fileURLWithPath: Self.go)
        build.arguments = ["build", "-o", output, "\(Self.servers)/go/server.go"]
        build.environment = ProcessInfo.processInfo.environment.merging([
            "CGO_ENABLED": "0", "GOCACHE": "\(scratch.path)/go-cache", "GOPATH": "\(scratch.path)/go-path",
            "GOPROXY": "off", "GOFLAGS": "-modcacherw", "HOME": scratch.path,
        ]) { $1 }
        build.standardOutput = pipe
        build.standardError = pipe
        try build.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        build.waitUntilExit()
        guard build.terminationStatus == 0 else { throw TestFailure("go build failed: \(text)") }
        return output
    }

    /// `net.FileListener(os.NewFile(3, …))`, `READY=1` on `NOTIFY_SOCKET`, and
    /// `http.Server.Shutdown` on `SIGTERM` after a second of `Connection: close`.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: go), "needs Go (apt-get install golang-go)"))
    func goServerTakesFd3() throws {
        let scratch = ScratchDirectory()
        let server = try buildGoServer(in: scratch)
        for mode in [ConnectionMode.newConnection, .keepAlive] {
            let (report, baton) = try reloadUnderLoad(
                [], command: [server], expectedHeader: "X-Pid",
                in: scratch, port: freePort(), mode: mode)
            #expect(report.distinctResponders > 2, "several generations must have answered")
            #expect(baton.stop() == 0)
        }
    }

    /// `server.listen({ fd: 3 })`, `READY=1` through `systemd-notify` (Node has no unix
    /// datagram sockets), and `server.close()` with `closeIdleConnections()` on `SIGTERM`
    /// after a second of `Connection: close`.
    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: node) && FileManager.default.isExecutableFile(atPath: systemdNotify),
            "needs Node.js and systemd-notify (apt-get install nodejs systemd)"))
    func nodeServerListensOnFd3() throws {
        let scratch = ScratchDirectory()
        for mode in [ConnectionMode.newConnection, .keepAlive] {
            let (report, baton) = try reloadUnderLoad(
                [], command: [Self.node, "\(Self.servers)/node/server.js"],
                expectedHeader: "X-Pid", in: scratch, port: freePort(), mode: mode)
            #expect(report.distinctResponders > 2, "several generations must have answered")
            #expect(baton.stop() == 0)
        }
    }
}
