import CBatonShim
import Glibc
import Testing

@testable import Baton

/// What a worker and a readiness probe are started with, without starting them.
@Suite struct WorkerLauncherTests {
    let launcher = WorkerLauncher(
        environment: ["PATH": "/usr/bin", "KEEP": "1", "LD_PRELOAD": "/lib/other.so"],
        logger: .init(label: "test"))

    func configuration(_ socketProtocol: SocketProtocol = .systemd) -> Configuration {
        var settings = WorkerConfiguration(command: ["./server", "--fd", "{fd:admin}"])
        settings.environment = ["KEEP": "2", "APP": "yes"]
        settings.socketProtocol = socketProtocol
        settings.directory = "/srv"
        return Configuration(
            listeners: [
                ListenerConfiguration(name: "http", address: .tcp(host: "127.0.0.1", port: 8080)),
                ListenerConfiguration(name: "admin", address: .tcp(host: "127.0.0.1", port: 8081)),
            ],
            workers: settings, controlSocket: "/tmp/test.sock")
    }

    @Test func aWorkerGetsItsSocketsItsNotifySocketAndWhoItIs() {
        let request = launcher.request(
            for: WorkerID(generation: 3, slot: 1), configuration(),
            sockets: [("http", 17), ("admin", 18)], notifyAddress: "@baton/1/g3/s1")
        #expect(request.sockets == [17, 18])
        #expect(request.processIDVariable == "LISTEN_PID")
        #expect(request.parentDeathSignal == 15, "a worker drains when Baton dies")
        #expect(request.command == ["./server", "--fd", "4"])
        #expect(request.directory == "/srv")
        #expect(request.environment["LISTEN_FDS"] == "2")
        #expect(request.environment["LISTEN_FDNAMES"] == "http:admin")
        #expect(request.environment["NOTIFY_SOCKET"] == "@baton/1/g3/s1")
        #expect(request.environment["BATON_GENERATION"] == "3")
        #expect(request.environment["BATON_SLOT"] == "1")
        #expect(request.environment["KEEP"] == "2", "the configuration's environment wins over Baton's")
        #expect(request.environment["APP"] == "yes" && request.environment["PATH"] == "/usr/bin")
        #expect(request.stdout == -1 && request.stderr == -1, "output is inherited unless prefixed")
    }

    /// With a `flows = "quic"` listener, each socket's cookie (the low 32 bits of its
    /// SO_COOKIE, as the steering program knows it) in LISTEN_FDNAMES order; empty for
    /// the others. Without one, no variable.
    @Test func aWorkerOfAQuicListenerGetsItsSocketsCookies() throws {
        var configuration = configuration()
        var quic = ListenerConfiguration(name: "quic", address: .udp(host: "127.0.0.1", port: 0))
        quic.flowMode = .quic
        configuration.listeners.insert(quic, at: 0)
        let fd = try ListenerSocket.open(quic, backlog: 1)
        defer { _ = Glibc.close(fd) }
        var cookie: UInt64 = 0
        #expect(baton_socket_cookie(fd, &cookie) == 0)
        let hex = String(UInt32(truncatingIfNeeded: cookie), radix: 16)
        let request = launcher.request(
            for: WorkerID(generation: 1, slot: 0), configuration, sockets: [("quic", fd), ("http", 17)], notifyAddress: "@n")
        #expect(request.environment["BATON_QUIC_COOKIES"] == String(repeating: "0", count: 8 - hex.count) + hex + ":")
        let plain = launcher.request(for: WorkerID(generation: 1, slot: 0), self.configuration(), sockets: [("http", 17)], notifyAddress: "@n")
        #expect(plain.environment["BATON_QUIC_COOKIES"] == nil)
    }

    /// The user's HOME, USER and LOGNAME, unless the configuration sets them; the rest
    /// of the privilege settings go to the spawning child as they are.
    @Test func aWorkerAsAnotherUserGetsItsIdentityAndLimits() {
        var configuration = configuration()
        configuration.workers.user = WorkerUser(name: "app", uid: 1234, gid: 1234, home: "/srv/app", groups: [1234, 27])
        configuration.workers.environment["LOGNAME"] = "batch"
        configuration.workers.noNewPrivileges = true
        configuration.workers.umask = 0o027
        configuration.workers.limits = [.nofile: 65536, .core: 0]
        let request = launcher.request(for: WorkerID(generation: 1, slot: 0), configuration, sockets: [], notifyAddress: "@n")
        #expect(request.environment["HOME"] == "/srv/app")
        #expect(request.environment["USER"] == "app")
        #expect(request.environment["LOGNAME"] == "batch", "the configuration's environment wins")
        #expect(request.noNewPrivileges && request.umask == 0o027 && request.limits == [.nofile: 65536, .core: 0])
        if CredentialPrivilege.canChangeCredentials {
            #expect(request.credentials == ProcessSpawner.Credentials(uid: 1234, gid: 1234, groups: [1234, 27]))
        } else {
            #expect(request.credentials == nil, "without the privilege the child changes nothing (the reader refuses another user)")
        }
    }

    @Test func thePreloadProtocolPutsTheLibraryBeforeTheInheritedOne() {
        let request = launcher.request(
            for: WorkerID(generation: 1, slot: 0), configuration(.preload),
            sockets: [("http", 5)], notifyAddress: "@n", preloadLibrary: "/opt/libbaton-preload.so")
        #expect(request.environment["LD_PRELOAD"] == "/opt/libbaton-preload.so /lib/other.so")
        #expect(request.environment["BATON_PRELOAD_FD_COUNT"] == "1")
        #expect(request.processIDVariable == "BATON_PRELOAD_PID", "the library acts in the worker alone")
    }

    @Test func aProbeIsToldWhichWorkerItChecksAndRunsThroughTheShell() {
        var settings = WorkerConfiguration(command: ["./server"])
        settings.directory = "/srv"
        let request = ReadinessProbe.request(
            "curl -fs http://127.0.0.1:8080/", for: WorkerID(generation: 2, slot: 3),
            pid: 777, settings: settings, environment: ["PATH": "/bin"], output: 9)
        #expect(request.command == ["/bin/sh", "-c", "curl -fs http://127.0.0.1:8080/"])
        #expect(request.environment == ["PATH": "/bin", "BATON_WORKER_PID": "777", "BATON_GENERATION": "2", "BATON_SLOT": "3"])
        #expect(request.directory == "/srv")
        #expect(request.stdout == 9 && request.stderr == 9)
        #expect(request.sockets.isEmpty, "a probe gets none of the listeners")
    }

    @Test func notifyMessagesBecomeEventsForTheirWorker() {
        let worker = WorkerID(generation: 1, slot: 0)
        #expect(
            NotifyMessage("STATUS=warming up\nREADY=1").events(for: worker)
                == [.workerStatus(worker, "warming up"), .workerReady(worker)])
        #expect(NotifyMessage("STOPPING=1").events(for: worker) == [.workerStopping(worker)])
        #expect(NotifyMessage("WATCHDOG=1\nREADY=0").events(for: worker).isEmpty)
    }
}
