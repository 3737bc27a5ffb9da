import BatonCore
import Foundation
import Testing

/// What a worker finds under each socket protocol, read by a worker of the test's own
/// that writes down its environment, arguments and sockets, and checked against the
/// protocol's own definition.
@Suite(.serialized) struct ProtocolTests {
    /// Writes `{pid, ppid, argv, environment, sockets, maps}` to `$DUMP_DIRECTORY/<pid>.json`,
    /// then waits for its drain signal. With `--exercise-preload PORT` it first does what a
    /// server that binds its own port does, and writes down what came of it.
    static let dumpScript = #"""
        import json, os, signal, socket, sys

        def sockets():
            found = {}
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd < 3:
                    continue
                try:
                    probe = socket.socket(fileno=os.dup(fd))
                except OSError:
                    continue
                address = probe.getsockname()
                found[str(fd)] = {
                    "family": probe.family.name, "type": probe.type.name,
                    "address": address if isinstance(address, str) else list(address[:2]),
                    "inode": os.fstat(fd).st_ino,
                }
                probe.close()
            return found

        preload = None
        if "--exercise-preload" in sys.argv:
            port = int(sys.argv[sys.argv.index("--exercise-preload") + 1])
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            server.bind(("127.0.0.1", port))
            server.listen(5)
            other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            other.bind(("127.0.0.1", 0))
            # A bind() whose address is too short to hold its family, its one byte at the
            # end of a page before an unreadable one: the library must hand it to the C
            # library (EINVAL) without reading past it.
            import ctypes, mmap
            libc = ctypes.CDLL(None, use_errno=True)
            pages = mmap.mmap(-1, 2 * mmap.PAGESIZE)
            page_end = ctypes.addressof(ctypes.c_char.from_buffer(pages)) + mmap.PAGESIZE
            libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            libc.mprotect(page_end, mmap.PAGESIZE, 0)
            libc.bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
            short = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            short_bind_errno = 0 if libc.bind(short.fileno(), page_end - 1, 1) == 0 else ctypes.get_errno()
            short.close()
            preload = {
                "fd": server.fileno(), "inode": os.fstat(server.fileno()).st_ino,
                "address": list(server.getsockname()), "other_port": other.getsockname()[1],
                "inherited_cloexec": bool(os.get_inheritable(3)) is False,
                "short_bind_errno": short_bind_errno,
            }
            server.shutdown(socket.SHUT_RDWR)
            server.close()
            other.close()

        record = {
            "pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv, "environment": dict(os.environ),
            "sockets": sockets(), "maps": open("/proc/self/maps").read(), "preload": preload,
        }
        directory = os.environ["DUMP_DIRECTORY"]
        with open(f"{directory}/{os.getpid()}.tmp", "w") as file:
            json.dump(record, file)
        os.rename(f"{directory}/{os.getpid()}.tmp", f"{directory}/{os.getpid()}.json")
        signal.pause()
        """#

    struct Dump: Decodable {
        struct Socket: Decodable, Equatable {
            var family: String
            var type: String
            var address: Address
            var inode: Int
        }

        /// `[host, port]` for IP sockets, the path for unix sockets.
        enum Address: Decodable, Equatable {
            case ip(String, Int)
            case path(String)

            init(from decoder: Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let path = try? container.decode(String.self) {
                    self = .path(path)
                    return
                }
                var pair = try decoder.unkeyedContainer()
                self = .ip(try pair.decode(String.self), try pair.decode(Int.self))
            }
        }

        struct Preload: Decodable {
            var fd: Int
            var inode: Int
            var address: [Port]
            var other_port: Int
            var inherited_cloexec: Bool
            var short_bind_errno: Int
        }

        enum Port: Decodable, Equatable {
            case text(String)
            case number(Int)

            init(from decoder: Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Int.self) { self = .number(number) } else { self = .text(try container.decode(String.self)) }
            }
        }

        var pid: Int32
        var ppid: Int32
        var argv: [String]
        var environment: [String: String]
        var sockets: [String: Socket]
        var maps: String
        var preload: Preload?
    }

    /// A service with one listener of every kind, and its expected sockets in fd order.
    struct Service {
        let scratch = ScratchDirectory()
        let ports = (tcp: freePort(), tcp6: freePort(), udp: freePort())
        var dumps: String { "\(scratch.path)/dumps" }
        var unixPath: String { "\(scratch.path)/admin.sock" }

        var listenOptions: [String] {
            [
                "--listen", "http=tcp://127.0.0.1:\(ports.tcp)", "--listen", "v6=tcp://[::1]:\(ports.tcp6)",
                "--listen", "dns=udp://127.0.0.1:\(ports.udp)", "--listen", "admin=unix://\(unixPath)",
            ]
        }

        var expectedSockets: [(family: String, type: String, address: Dump.Address)] {
            [
                ("AF_INET", "SOCK_STREAM", .ip("127.0.0.1", ports.tcp)), ("AF_INET6", "SOCK_STREAM", .ip("::1", ports.tcp6)),
                ("AF_INET", "SOCK_DGRAM", .ip("127.0.0.1", ports.udp)), ("AF_UNIX", "SOCK_STREAM", .path(unixPath)),
            ]
        }

        init() throws {
            try FileManager.default.createDirectory(atPath: "\(scratch.path)/dumps", withIntermediateDirectories: true)
            try scratch.write("dump.py", ProtocolTests.dumpScript)
        }

        func start(_ options: [String], arguments: [String] = []) throws -> BatonUnderTest {
            try BatonUnderTest(
                listenOptions + options + ["--ready", "delay:100ms", "--", "/usr/bin/python3", "\(scratch.path)/dump.py"] + arguments,
                in: scratch, environment: ["DUMP_DIRECTORY": dumps])
        }

        /// The dump of worker `pid`, waiting (bounded) for it to be written.
        func dump(of pid: Int32?) throws -> Dump {
            let pid = try #require(pid)
            let path = "\(dumps)/\(pid).json"
            let deadline = Date().addingTimeInterval(30)
            while !FileManager.default.fileExists(atPath: path) && Date() < deadline {
                usleep(20_000)
            }
            return try JSONDecoder().decode(Dump.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        }

        /// Checks that the sockets at `descriptors` are the service's, in order.
        func expectSockets(_ dump: Dump, at descriptors: [String]) {
            #expect(descriptors.count == expectedSockets.count)
            for (descriptor, expected) in zip(descriptors, expectedSockets) {
                let socket = dump.sockets[descriptor]
                #expect(
                    socket?.family == expected.family && socket?.type == expected.type && socket?.address == expected.address,
                    "fd \(descriptor): \(String(describing: socket)), expected \(expected)")
            }
        }
    }

    static let protocolVariables = [
        "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "EINHORN_FD_COUNT", "EINHORN_MASTER_PID",
        "SERVER_STARTER_PORT", "SERVER_STARTER_GENERATION", "BATON_PRELOAD_FD_COUNT",
    ]

    func expectOnly(_ variables: Set<String>, in dump: Dump) {
        let present = Set(dump.environment.keys.filter { Self.protocolVariables.contains($0) || $0.hasPrefix("EINHORN_FD_") })
        let expected = variables.filter { Self.protocolVariables.contains($0) || $0.hasPrefix("EINHORN_FD_") }
        #expect(present == expected, "protocol variables of another protocol leaked")
    }

    /// sd_listen_fds(3): `LISTEN_FDS` sockets from fd 3 (`SD_LISTEN_FDS_START`), `LISTEN_PID`
    /// the worker's own pid, `LISTEN_FDNAMES` colon-separated names.
    @Test func systemd() throws {
        let service = try Service()
        let baton = try service.start([])
        let worker = try baton.waitUntilServing().generations[0].workers[0]
        let dump = try service.dump(of: worker.pid)
        #expect(dump.environment["LISTEN_FDS"] == "4")
        #expect(dump.environment["LISTEN_PID"] == "\(dump.pid)")
        #expect(dump.environment["LISTEN_FDNAMES"] == "http:v6:dns:admin")
        service.expectSockets(dump, at: ["3", "4", "5", "6"])
        expectOnly(["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"], in: dump)
        #expect(baton.stop() == 0)
    }

    /// einhorn's README: `EINHORN_FD_COUNT` descriptors named by `EINHORN_FD_0`, … in
    /// listener order; its workers trust them only when `EINHORN_MASTER_PID` is their parent.
    @Test func einhorn() throws {
        let service = try Service()
        let baton = try service.start(["--protocol", "einhorn", "--workers", "2"])
        let workers = try baton.waitUntilServing().generations[0].workers
        for worker in workers {
            let dump = try service.dump(of: worker.pid)
            #expect(dump.environment["EINHORN_FD_COUNT"] == "4")
            let descriptors = (0..<4).compactMap { dump.environment["EINHORN_FD_\($0)"] }
            #expect(descriptors == ["3", "4", "5", "6"])
            service.expectSockets(dump, at: descriptors)
            #expect(dump.environment["EINHORN_MASTER_PID"] == "\(dump.ppid)")
            #expect(dump.ppid == baton.process.processIdentifier)
            #expect(dump.environment["EINHORN_CHILD_INDEX"] == "\(worker.slot)")
            expectOnly(Set(["EINHORN_FD_COUNT", "EINHORN_MASTER_PID"] + (0..<4).map { "EINHORN_FD_\($0)" }), in: dump)
        }
        #expect(baton.stop() == 0)
    }

    /// Server::Starter: `SERVER_STARTER_PORT` is `key=fd` entries joined by `;`, the key
    /// `host:port`, `[v6host]:port` or the unix path; `SERVER_STARTER_GENERATION` counts
    /// the generations from 1. When `start_server` is installed, its own variable for the
    /// same kinds of listener is read too, and its keys must have the same form.
    @Test func serverStarter() throws {
        let service = try Service()
        let baton = try service.start(["--protocol", "server-starter"])
        let first = try service.dump(of: try baton.waitUntilServing().generations[0].workers[0].pid)
        let ports = service.ports
        #expect(
            first.environment["SERVER_STARTER_PORT"]
                == "127.0.0.1:\(ports.tcp)=3;[::1]:\(ports.tcp6)=4;127.0.0.1:\(ports.udp)=5;\(service.unixPath)=6")
        #expect(first.environment["SERVER_STARTER_GENERATION"] == "1")
        // As Server::Starter's own server_ports() reads it.
        let entries = (first.environment["SERVER_STARTER_PORT"] ?? "").split(separator: ";").map { $0.split(separator: "=", maxSplits: 1) }
        service.expectSockets(first, at: entries.map { String($0.last ?? "") })
        expectOnly(["SERVER_STARTER_PORT", "SERVER_STARTER_GENERATION"], in: first)

        let reply = try baton.reload()
        #expect(reply.ok)
        let second = try service.dump(of: try baton.waitUntilServing(generation: 2).generations.last?.workers[0].pid)
        #expect(second.environment["SERVER_STARTER_GENERATION"] == "2")
        #expect(baton.stop() == 0)

        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/start_server") else {
            print("skipping the comparison with start_server: /usr/bin/start_server is not installed (libserver-starter-perl)")
            return
        }
        let other = (tcp: freePort(), tcp6: freePort(), udp: freePort())
        let path = "\(service.scratch.path)/starter.sock"
        let starter = Process()
        starter.executableURL = URL(fileURLWithPath: "/usr/bin/start_server")
        starter.arguments = [
            "--port=127.0.0.1:\(other.tcp)", "--port=[::1]:\(other.tcp6)", "--port=127.0.0.1:u\(other.udp)",
            "--path=\(path)", "--", "/usr/bin/python3", "\(service.scratch.path)/dump.py",
        ]
        starter.environment = ProcessInfo.processInfo.environment.merging(["DUMP_DIRECTORY": service.dumps]) { $1 }
        starter.standardError = FileHandle.nullDevice
        try starter.run()
        defer {
            // start_server runs its worker with nearly every signal blocked, so a SIGTERM
            // would never end it: kill both by pid.
            let children =
                (try? String(
                    contentsOfFile: "/proc/\(starter.processIdentifier)/task/\(starter.processIdentifier)/children",
                    encoding: .utf8)) ?? ""
            kill(starter.processIdentifier, SIGKILL)
            for child in children.split(separator: " ").compactMap({ Int32($0) }) {
                kill(child, SIGKILL)
            }
            starter.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(30)
        var starterDump: Dump?
        while starterDump == nil && Date() < deadline {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: service.dumps)) ?? []
            for file in files where file.hasSuffix(".json") {
                if let dump = try? JSONDecoder().decode(Dump.self, from: Data(contentsOf: URL(fileURLWithPath: "\(service.dumps)/\(file)"))),
                    dump.ppid == starter.processIdentifier
                {
                    starterDump = dump
                }
            }
            usleep(50_000)
        }
        let theirs = try #require(starterDump?.environment["SERVER_STARTER_PORT"], "start_server's worker never wrote its dump")
        let theirKeys = theirs.split(separator: ";").map { String($0.split(separator: "=", maxSplits: 1)[0]) }
        #expect(
            theirKeys == ["127.0.0.1:\(other.tcp)", "[::1]:\(other.tcp6)", "127.0.0.1:\(other.udp)", path],
            "start_server wrote \(theirs)")
        #expect(starterDump?.environment["SERVER_STARTER_GENERATION"] == "1")
    }

    /// `{fd:NAME}` in the command, here with no protocol at all: the arguments carry the
    /// numbers and the environment says nothing.
    @Test func descriptorNumbersInTheArguments() throws {
        let service = try Service()
        let baton = try service.start(["--protocol", "none"], arguments: ["--http-fd", "{fd:http}", "--admin={fd:admin}", "--dns={fd:dns}"])
        let dump = try service.dump(of: try baton.waitUntilServing().generations[0].workers[0].pid)
        #expect(Array(dump.argv.dropFirst()) == ["--http-fd", "3", "--admin=6", "--dns=5"])
        service.expectSockets(dump, at: ["3", "4", "5", "6"])
        expectOnly([], in: dump)
        #expect(baton.stop() == 0)
    }

    /// The preload library is loaded, knows the sockets, and turns a server's own
    /// socket/setsockopt/bind/listen into Baton's socket; the server's shutdown and close
    /// leave Baton's socket listening.
    @Test func preloadTurnsTheServersBindIntoTheInheritedSocket() throws {
        let service = try Service()
        let baton = try service.start(["--protocol", "preload"], arguments: ["--exercise-preload", "\(service.ports.tcp)"])
        let dump = try service.dump(of: try baton.waitUntilServing().generations[0].workers[0].pid)
        #expect(dump.environment["LD_PRELOAD"] == Products.path("libbaton-preload.so"))
        #expect(dump.environment["BATON_PRELOAD_FD_COUNT"] == "4")
        #expect(dump.maps.contains("libbaton-preload.so"), "the library must be loaded into the worker")
        expectOnly(["BATON_PRELOAD_FD_COUNT"], in: dump)

        let preload = try #require(dump.preload)
        #expect(preload.fd > 6, "the server's socket stays on the descriptor the server created")
        #expect(preload.inode == dump.sockets["3"]?.inode, "bind() made it Baton's socket")
        #expect(preload.address == [.text("127.0.0.1"), .number(service.ports.tcp)])
        #expect(preload.other_port != service.ports.tcp && preload.other_port != 0, "a bind to another address is untouched")
        #expect(preload.inherited_cloexec, "the original descriptor is kept from programs the server runs")
        #expect(
            preload.short_bind_errno == Int(EINVAL),
            "a bind() with an address too short for its family reaches the C library, unread (the fuzz target's find)")
        service.expectSockets(dump, at: ["3", "4", "5", "6"])

        // The server shut down and closed its socket; Baton's still listens.
        let connection = try #require(try? HTTPProbe.connect(port: service.ports.tcp), "the listener must still accept connections")
        close(connection)
        #expect(baton.stop() == 0)
    }

    /// Servers for the preload library's limits. `worker-with-child`: a worker that starts
    /// a child with its own listening socket on fd 3 and the worker's environment, as a
    /// server starting a helper does; the child writes down, when SIGTERM reaches its
    /// handler, what fd 3 is and which of the library's variables it sees.
    /// `blocks-realtime`: a server that blocks every real-time signal and exits from its
    /// own SIGTERM handler, leaving a mark.
    static let preloadLimitsScript = #"""
        import json, os, signal, socket, sys

        directory = os.environ["DUMP_DIRECTORY"]

        def write(name, record):
            with open(f"{directory}/{name}.tmp", "w") as file:
                json.dump(record, file)
            os.rename(f"{directory}/{name}.tmp", f"{directory}/{name}")

        mode = sys.argv[1]
        if mode == "worker-with-child":
            own = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            own.bind(("127.0.0.1", 0))
            own.listen(5)
            if os.fork() == 0:
                os.dup2(own.fileno(), 3)
                os.execv(sys.executable, [sys.executable, sys.argv[0], "child", str(os.fstat(3).st_ino)])
            while True:
                signal.pause()
        elif mode == "child":
            def term(number, frame):
                write("child.json", {
                    "inode_at_term": os.fstat(3).st_ino, "own_inode": int(sys.argv[2]),
                    "variables": sorted(key for key in os.environ if key.startswith("BATON_PRELOAD")),
                })
                os._exit(0)
            signal.signal(signal.SIGTERM, term)
            write("child.pid", {"pid": os.getpid()})
            while True:
                signal.pause()
        elif mode == "blocks-realtime":
            signal.pthread_sigmask(signal.SIG_BLOCK, [number for number in range(34, 65)])
            def term(number, frame):
                write(f"{os.getpid()}.drained", {"signal": number})
                os._exit(0)
            signal.signal(signal.SIGTERM, term)
            while True:
                signal.pause()
        """#

    struct PreloadChild: Decodable {
        var inode_at_term: Int
        var own_inode: Int
        var variables: [String]
    }

    func startPreloadLimits(_ service: Service, _ mode: String, _ options: [String] = []) throws -> BatonUnderTest {
        try service.scratch.write("limits.py", Self.preloadLimitsScript)
        return try BatonUnderTest(
            service.listenOptions + ["--protocol", "preload", "--ready", "delay:100ms"] + options
                + ["--", "/usr/bin/python3", "\(service.scratch.path)/limits.py", mode],
            in: service.scratch, environment: ["DUMP_DIRECTORY": service.dumps])
    }

    /// Waits (bounded) for a JSON file the script writes.
    func waitForFile<T: Decodable>(_ path: String, as type: T.Type, baton: BatonUnderTest) throws -> T {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: path) {
                return try JSONDecoder().decode(T.self, from: data)
            }
            usleep(20_000)
        }
        throw TestFailure("\(path) was never written:\n\(baton.log)")
    }

    /// The library acts in the process Baton started alone: a child of the server that
    /// inherits its environment and has a socket of its own at fd 3 keeps that socket
    /// and gets its SIGTERM as it asked, and the library's variables go no further.
    @Test func preloadLeavesTheServersChildrenAlone() throws {
        let service = try Service()
        let baton = try startPreloadLimits(service, "worker-with-child")
        defer { baton.stop() }
        try baton.waitUntilServing()
        struct Pid: Decodable { var pid: Int32 }
        let child = try waitForFile("\(service.dumps)/child.pid", as: Pid.self, baton: baton).pid
        defer { kill(child, SIGKILL) }
        kill(child, SIGTERM)
        let seen = try waitForFile("\(service.dumps)/child.json", as: PreloadChild.self, baton: baton)
        #expect(seen.inode_at_term == seen.own_inode, "the child's own socket at fd 3 must not be replaced")
        #expect(seen.variables.isEmpty, "the library's variables must not reach the child's environment")
    }

    /// A server that blocks the real-time signals still drains through its own handler
    /// after the grace: the grace timer does not depend on the server's signal mask.
    @Test func preloadDrainsAServerThatBlocksRealtimeSignals() throws {
        let service = try Service()
        let baton = try startPreloadLimits(service, "blocks-realtime", ["--drain-timeout", "20s"])
        defer { baton.stop() }
        let pid = try #require(try baton.waitUntilServing().generations[0].workers[0].pid)
        #expect(baton.stop(timeout: 60) == 0)
        #expect(
            FileManager.default.fileExists(atPath: "\(service.dumps)/\(pid).drained"),
            "the server's own SIGTERM handler must run after the grace:\n\(baton.log)")
        #expect(!baton.log.contains("SIGKILL"), "the server must not need killing:\n\(baton.log)")
    }

    @Test func missingPreloadLibraryFailsTheWorkerNamingIt() throws {
        let service = try Service()
        let baton = try service.start(["--protocol", "preload", "--preload-library", "/nonexistent/libbaton-preload.so"])
        let deadline = Date().addingTimeInterval(30)
        while !baton.log.contains("/nonexistent/libbaton-preload.so cannot be read") && Date() < deadline {
            usleep(50_000)
        }
        #expect(baton.log.contains("the preload library /nonexistent/libbaton-preload.so cannot be read"), "\(baton.log)")
        baton.stop()
    }
}

/// A plain TCP connection to 127.0.0.1.
enum HTTPProbe {
    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw TestFailure("connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        return fd
    }
}
