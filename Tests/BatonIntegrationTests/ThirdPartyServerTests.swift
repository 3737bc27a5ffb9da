import BatonCore
import BatonLoad
import Foundation
import Testing

extension ReloadUnderLoadTests {
    /// Servers nobody here wrote, as Debian ships them (installed by `.ci/run`), each under
    /// load across reloads: not one request may fail. They run under Debian's own Python
    /// (`/usr/bin/python3`), which has Debian's modules. Nested in the serialized
    /// ``ReloadUnderLoadTests`` so that no two load tests share the CPU: a starved server
    /// drains late, and that would be measured as Baton's failure.
    @Suite(.serialized) struct ThirdPartyServerTests {
        static let reloads = 20
        static let python = "/usr/bin/python3"

        /// Whether Debian's Python can import `module`; a test that needs it is skipped, with
        /// the package to install, when it cannot.
        /// Readiness for servers that say nothing: the worker holds one of its sockets
        /// twice, so it has made a descriptor of its own for it (uvicorn's `--fd`, or a
        /// `bind()` the preload library answered), which it does just before it serves.
        static let holdsItsSocket = "exec:readlink /proc/$BATON_WORKER_PID/fd/* | sort | uniq -d | grep -q socket"

        static func debianPythonHas(_ module: String) -> Bool {
            FileManager.default.isExecutableFile(atPath: python)
                && ((try? run(python, ["-c", "import \(module)"]).status) ?? 1) == 0
        }

        /// `--workers 2` slots of `command` under Baton on a fresh port, loaded by 8 clients
        /// (on new connections unless `mode` says otherwise) while it is reloaded `reloads`
        /// times; returns what the load saw.
        func reloadUnderLoad(
            _ options: [String], command: [String], expectedHeader: String?,
            in scratch: ScratchDirectory, port: Int,
            mode: ConnectionMode = .newConnection
        ) throws -> (LoadReport, BatonUnderTest) {
            let baton = try BatonUnderTest(
                ["--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--ready-timeout", "30s", "--drain-timeout", "10s"]
                    + options + ["--"] + command,
                in: scratch)
            try baton.waitUntilServing()
            var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
            configuration.clients = 8
            configuration.mode = mode
            configuration.expectedHeader = expectedHeader
            // A request that is never answered still fails; one that a CPU-starved
            // interpreter answers after 5 s is not a lost request (a CI run on a 2-core
            // machine busy with builds saw Node answer late, all clients at once).
            configuration.requestTimeout = .seconds(30)
            let load = LoadGenerator(configuration)
            load.start()
            var replies: [ControlReply] = []
            for _ in 1...Self.reloads {
                load.markEvent("reload-start")
                replies.append(try baton.reload())
                load.markEvent("reload-end")
            }
            let report = load.stop()
            #expect(replies.allSatisfy { $0.ok }, "every reload must take over: \(replies.filter { !$0.ok })\n\(baton.log.suffix(4000))")
            #expect(replies.last?.generation == Self.reloads + 1)
            #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
            #expect(report.succeeded > Self.reloads, "the load must actually have run")
            let server = (command.count > 1 ? command.dropFirst() : command[...]).prefix(3)
                .map { ($0 as NSString).lastPathComponent }.joined(separator: " ")
            print("\(server), \(mode.rawValue): \(Self.reloads) reloads, \(report.succeeded) requests, \(report.totalFailures) failed")
            return (report, baton)
        }

        /// gunicorn reads `LISTEN_FDS` (checking `LISTEN_PID` against its own pid), says
        /// `READY=1` on `NOTIFY_SOCKET`, forks its own worker, and drains on `SIGTERM`.
        @Test(.enabled(if: ThirdPartyServerTests.debianPythonHas("gunicorn"), "needs Debian's gunicorn (apt-get install gunicorn)"))
        func gunicornReadsListenFDs() throws {
            let scratch = ScratchDirectory()
            try scratch.write(
                "app.py",
                """
                import os

                def application(environ, start_response):
                    body = b"served by gunicorn\\n"
                    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                              ("X-Pid", str(os.getpid()))])
                    return [body]
                """)
            let (report, baton) = try reloadUnderLoad(
                [],
                command: [
                    Self.python, "-m", "gunicorn", "--workers", "1", "--graceful-timeout", "10",
                    "--chdir", scratch.path, "app:application",
                ],
                expectedHeader: "X-Pid", in: scratch, port: freePort())
            #expect(report.distinctResponders > 2, "several generations must have answered")
            #expect(baton.stop() == 0)
        }

        /// uvicorn takes the descriptor on its command line: `--fd {fd:http}`, with no
        /// protocol in the environment.
        @Test(.enabled(if: ThirdPartyServerTests.debianPythonHas("uvicorn"), "needs Debian's uvicorn (apt-get install uvicorn)"))
        func uvicornTakesTheDescriptorOnItsCommandLine() throws {
            let scratch = ScratchDirectory()
            try scratch.write(
                "asgi.py",
                """
                import os

                async def app(scope, receive, send):
                    if scope["type"] != "http":
                        return
                    body = b"served by uvicorn\\n"
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()),
                        (b"x-pid", str(os.getpid()).encode())]})
                    await send({"type": "http.response.body", "body": body})
                """)
            // uvicorn 0.17 shuts down every connection whose request it has not read yet,
            // one accepted a moment before the drain signal included: the preload library's
            // drain grace stops it accepting first, and answers those, before uvicorn sees
            // the signal.
            let (report, baton) = try reloadUnderLoad(
                ["--protocol", "preload", "--ready", Self.holdsItsSocket],
                command: [Self.python, "-m", "uvicorn", "--fd", "{fd:http}", "--app-dir", scratch.path, "--no-access-log", "asgi:app"],
                expectedHeader: "X-Pid", in: scratch, port: freePort())
            #expect(report.distinctResponders > 2, "several generations must have answered")
            #expect(baton.stop() == 0)
        }

        /// `python3 -m http.server` binds its own port and knows no protocol: the preload
        /// library hands it Baton's socket. Python's `KeyboardInterrupt` is its only clean
        /// exit, so it drains on `SIGINT`; it answers in daemon threads, which Python stops
        /// wherever they are when it exits, so the library's drain grace (it stops the
        /// server accepting, then lets it finish) is what keeps responses whole.
        @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: ThirdPartyServerTests.python), "needs /usr/bin/python3"))
        func pythonHTTPServerThroughThePreloadLibrary() throws {
            let scratch = ScratchDirectory()
            try FileManager.default.createDirectory(atPath: "\(scratch.path)/www", withIntermediateDirectories: true)
            try scratch.write("www/index.html", "served by http.server\n")
            let port = freePort()
            let (_, baton) = try reloadUnderLoad(
                ["--protocol", "preload", "--ready", Self.holdsItsSocket, "--drain-signal", "INT", "--output", "prefix"],
                command: [Self.python, "-m", "http.server", "--bind", "127.0.0.1", "--directory", "\(scratch.path)/www", "\(port)"],
                expectedHeader: nil, in: scratch, port: port)
            // Without the library the server could not bind a port Baton holds. Its access
            // log, prefixed with generation and slot, shows that generation after generation
            // served.
            let served = Set(
                baton.log.split(separator: "\n").filter { $0.contains("\"GET / HTTP/1.") && $0.contains("\" 200 ") }
                    .compactMap { $0.split(separator: "/").first })
            #expect(served.count > 2, "several generations must have answered: \(served.sorted())")
            #expect(baton.stop() == 0)
        }
    }
}
