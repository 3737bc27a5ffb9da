import BatonLoad
import Foundation
import Testing

/// Servers operators run every day, as Debian ships them (installed by `.ci/run`), each
/// under load across reloads with the recipe `Docs/wrapping.md` gives for it: uWSGI,
/// puma, unicorn, and a Rust server built with the standard library alone.
extension ReloadUnderLoadTests.ThirdPartyServerTests {
    static let uwsgi = "/usr/bin/uwsgi"
    static let puma = "/usr/bin/puma"
    static let unicorn = "/usr/bin/unicorn"
    static let rustc = "/usr/bin/rustc"

    /// Whether Debian's Ruby has `gem` (puma's systemd plugin needs `sd_notify`).
    static func rubyHas(_ gem: String) -> Bool {
        ((try? run("/usr/bin/ruby", ["-e", "require '\(gem)'"]).status) ?? 1) == 0
    }

    /// A Rack application that says which process answered.
    static let rackApplication = """
        run lambda { |env| [200, {"Content-Type" => "text/plain", "X-Pid" => Process.pid.to_s}, ["served by Ruby\\n"]] }
        """

    /// uWSGI takes the socket-activated descriptor as its own socket; `--protocol http`
    /// makes it speak HTTP there (it would speak the uwsgi protocol), and SIGTERM, which
    /// uWSGI takes as "reload everything", is made a graceful stop by a master hook.
    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: uwsgi) && FileManager.default.fileExists(atPath: "/usr/lib/uwsgi/plugins/python3_plugin.so"),
            "needs uWSGI with its Python 3 plugin (apt-get install uwsgi-core uwsgi-plugin-python3)"))
    func uwsgiServesHTTPOnTheActivatedSocket() throws {
        let scratch = ScratchDirectory()
        try scratch.write(
            "app.py",
            """
            import os

            def application(environ, start_response):
                body = b"served by uWSGI\\n"
                start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                          ("X-Pid", str(os.getpid()))])
                return [body]
            """)
        let (report, baton) = try reloadUnderLoad(
            [],
            command: [
                Self.uwsgi, "--plugin", "python3", "--protocol", "http", "--master", "--processes", "1",
                "--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
                "--chdir", scratch.path, "--wsgi-file", "app.py", "--disable-logging",
            ],
            expectedHeader: "X-Pid", in: scratch, port: freePort())
        #expect(report.distinctResponders > 2, "several generations must have answered")
        #expect(baton.stop() == 0)
    }

    /// puma uses a socket-activated descriptor for the `-b` address it matches, says
    /// `READY=1` through the `sd_notify` gem, and drains on SIGTERM. Clients on new
    /// connections only: puma 5.6 closes its idle keep-alive connections the moment it
    /// stops, racing a client that is just sending its next request on one (22 of 636,999
    /// keep-alive requests across 20 reloads, Docs/wrapping.md): those connections are
    /// puma's, not Baton's.
    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: puma) && ReloadUnderLoadTests.ThirdPartyServerTests.rubyHas("sd_notify"),
            "needs puma and the sd_notify gem (apt-get install puma ruby-sd-notify)"))
    func pumaTakesTheActivatedSocket() throws {
        let scratch = ScratchDirectory()
        try scratch.write("config.ru", Self.rackApplication)
        let port = freePort()
        let (report, baton) = try reloadUnderLoad(
            [],
            command: [Self.puma, "-b", "tcp://127.0.0.1:\(port)", "-w", "0", "-t", "4:4", "--dir", scratch.path, "config.ru"],
            expectedHeader: "X-Pid", in: scratch, port: port)
        #expect(report.distinctResponders > 2, "several generations must have answered")
        #expect(baton.stop() == 0)
    }

    /// unicorn inherits listeners named by `UNICORN_FD` (matched to its `-l` address),
    /// says nothing when ready (its master forks its worker once it can serve), and drains
    /// on SIGQUIT: SIGTERM is its quick stop.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: unicorn), "needs unicorn (apt-get install unicorn)"))
    func unicornInheritsUnicornFD() throws {
        let scratch = ScratchDirectory()
        try scratch.write("config.ru", Self.rackApplication)
        let port = freePort()
        let (report, baton) = try reloadUnderLoad(
            ["--ready", "exec:pgrep -P $BATON_WORKER_PID", "--drain-signal", "QUIT"],
            command: ["/usr/bin/env", "UNICORN_FD=3", Self.unicorn, "-l", "127.0.0.1:\(port)", "\(scratch.path)/config.ru"],
            expectedHeader: "X-Pid", in: scratch, port: port)
        #expect(report.distinctResponders > 2, "several generations must have answered")
        #expect(baton.stop() == 0)
    }

    /// `Servers/rust/server.rs`: `TcpListener::from_raw_fd(3)`, `READY=1` on
    /// `NOTIFY_SOCKET`, and a drain on SIGTERM, with the standard library only.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: rustc), "needs Rust (apt-get install rustc)"))
    func rustServerTakesFd3() throws {
        let scratch = ScratchDirectory()
        let server = "\(scratch.path)/rust-server"
        let build = try run(Self.rustc, ["-O", "-o", server, "\(Self.servers)/rust/server.rs"])
        guard build.status == 0 else { throw TestFailure("rustc failed: \(build.output)") }
        for mode in [ConnectionMode.newConnection, .keepAlive] {
            let (report, baton) = try reloadUnderLoad(
                [], command: [server], expectedHeader: "X-Pid",
                in: scratch, port: freePort(), mode: mode)
            #expect(report.distinctResponders > 2, "several generations must have answered")
            #expect(baton.stop() == 0)
        }
    }
}
