import BatonCore
import Foundation

/// A private supervisord (Debian's `supervisor`), in the foreground as a child of the
/// test, with its own configuration, unix control socket and logs in a scratch
/// directory, running `Units/supervisord-baton.conf` as shipped, with only its paths and
/// port filled in. Stopped by pid when the test ends, with Baton and its workers.
final class SupervisordUnderTest {
    static let supervisord = "/usr/bin/supervisord"
    static let supervisorctl = "/usr/bin/supervisorctl"
    /// The program the shipped file defines.
    static let program = "baton-demo"

    /// Why these tests cannot run here, or nil when they can.
    static let unavailableReason: String? = {
        for tool in [supervisord, supervisorctl, "/usr/bin/python3"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed (apt-get install supervisor)"
        }
        return nil
    }()

    let process = Process()
    let port: Int
    /// Baton's control socket, as the program's command line names it.
    let controlSocket: String
    let batonLog: String
    private let configuration: String
    private let log: String
    /// Baton and worker pids seen, killed at the end if anything is left of them.
    private var seen: Set<pid_t> = []

    init(in scratch: ScratchDirectory) throws {
        port = freePort()
        controlSocket = "\(scratch.path)/baton.sock"
        batonLog = "\(scratch.path)/baton-demo.log"
        configuration = "\(scratch.path)/supervisord.conf"
        log = "\(scratch.path)/supervisord.log"
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Units/supervisord-baton.conf").standardized.path
        var program = try String(contentsOfFile: shipped, encoding: .utf8)
        for (from, to) in [
            ("/usr/local/bin/", Products.directory + "/"), ("127.0.0.1:8080", "127.0.0.1:\(port)"),
            ("/run/baton-demo.sock", controlSocket), ("/var/log/supervisor/baton-demo.log", batonLog),
        ] {
            guard program.contains(from) else { throw TestFailure("\(shipped) no longer mentions \(from)") }
            program = program.replacingOccurrences(of: from, with: to)
        }
        try scratch.write("baton-demo.conf", program)
        try scratch.write(
            "supervisord.conf",
            """
            [unix_http_server]
            file=\(scratch.path)/supervisor.sock
            chmod=0700

            [supervisord]
            nodaemon=true
            logfile=\(log)
            pidfile=\(scratch.path)/supervisord.pid
            childlogdir=\(scratch.path)
            loglevel=info

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            [supervisorctl]
            serverurl=unix://\(scratch.path)/supervisor.sock

            [include]
            files=\(scratch.path)/baton-demo.conf

            """)
        let output = "\(scratch.path)/supervisord.out"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        // The test process runs with SIGTERM and others blocked, and children inherit the
        // mask: supervisord would never see the SIGTERM that stops it. Debian's Python
        // (supervisord's own) clears the mask and executes it, keeping the pid.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            "-c",
            """
            import os, signal, sys
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for ignored in (signal.SIGPIPE, signal.SIGXFSZ): signal.signal(ignored, signal.SIG_DFL)
            os.execv(sys.argv[1], sys.argv[1:])
            """,
            Self.supervisord, "--nodaemon", "--configuration", configuration,
        ]
        process.standardOutput = handle
        process.standardError = handle
        process.currentDirectoryURL = URL(fileURLWithPath: scratch.path)
        try process.run()
    }

    /// `supervisorctl ARGUMENTS` against this supervisord.
    @discardableResult
    func control(_ arguments: String...) throws -> (status: Int32, output: String) {
        try run(Self.supervisorctl, ["--configuration", configuration] + arguments)
    }

    /// The program's state as `supervisorctl status` shows it: `RUNNING`, `STOPPED`, ….
    func state() throws -> String {
        let line = try control("status", Self.program).output
        return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? line
    }

    /// Waits (bounded) until `supervisorctl status` shows `state`.
    func waitForState(_ state: String, timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            guard process.isRunning else { throw TestFailure("supervisord exited:\n\(logs)") }
            last = try self.state()
            if last == state { return }
            usleep(50_000)
        }
        throw TestFailure("\(Self.program) never became \(state) (last \(last)):\n\(logs)")
    }

    /// The pid supervisord watches.
    func programPID() throws -> pid_t? {
        pid_t(try control("pid", Self.program).output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Baton's status over its control socket.
    func status() throws -> StatusReport {
        let reply = try ControlClient.send(ControlRequest(command: .status), to: controlSocket)
        guard let status = reply.status else { throw TestFailure("no status: \(reply)") }
        seen.insert(status.pid)
        seen.formUnion(status.generations.flatMap(\.workers).compactMap(\.pid))
        return status
    }

    /// Waits (bounded) until Baton's status satisfies `condition`.
    @discardableResult
    func waitForStatus(_ what: String, timeout: Double = 60, _ condition: (StatusReport) -> Bool) throws -> StatusReport {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no answer"
        while Date() < deadline {
            guard process.isRunning else { throw TestFailure("supervisord exited:\n\(logs)") }
            if let status = try? status() {
                if condition(status) { return status }
                last = "\(status.phase), generations \(status.generations.map { "\($0.number):\($0.role)" })"
            }
            usleep(20_000)
        }
        throw TestFailure("Baton's status never showed \(what) (\(last)):\n\(logs)")
    }

    /// Waits until generation `generation` serves with every worker ready.
    @discardableResult
    func waitUntilServing(generation: Int, timeout: Double = 60) throws -> StatusReport {
        try waitForStatus("generation \(generation) serving", timeout: timeout) { status in
            guard let serving = status.generations.last(where: { $0.role == .serving }) else { return false }
            return serving.number == generation && !serving.workers.isEmpty
                && serving.workers.allSatisfy { $0.state == .ready } && status.phase == .running
        }
    }

    /// supervisord's log and Baton's, for failure messages.
    var logs: String {
        let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        return "supervisord:\n\(read(log).suffix(3000))\nbaton:\n\(read(batonLog).suffix(4000))"
    }

    /// supervisord's own log.
    var supervisordLog: String {
        (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    }

    /// SIGTERM to supervisord, which stops its programs (Baton drains) and exits; waits
    /// (bounded) and returns its exit status, or -1 when it had to be killed.
    @discardableResult
    func shutdown(timeout: Double = 60) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        if let pid = try? programPID() { seen.insert(pid) }
        kill(process.processIdentifier, SIGTERM)
        return waitForExit(process, timeout: timeout)
    }

    deinit {
        shutdown()
        // What a killed supervisord left behind: Baton, and workers in their own groups.
        for pid in seen where isOurs(pid) {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
        }
    }

    /// Whether `pid` still runs one of this package's executables (not a reused pid).
    private func isOurs(_ pid: pid_t) -> Bool {
        let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return command.hasPrefix(Products.directory)
    }
}

/// One HTTP/1.1 request on a new loopback connection, written at once; its answer is
/// read later, so that something can happen while it is in flight.
final class RequestInFlight {
    private let fd: Int32

    init(port: Int, path: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET \(path) HTTP/1.1\r\nHost: baton-test\r\nConnection: close\r\n\r\n".utf8)
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
            close(fd)
            throw TestFailure("send: \(String(cString: strerror(errno)))")
        }
    }

    /// Everything the server sent until it closed the connection (bounded by a 60 s
    /// receive timeout), or the error that ended it.
    func response() -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 {
                received += buffer[0..<count]
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                if count < 0 { received += Array(" [\(String(cString: strerror(errno)))]".utf8) }
                return String(decoding: received, as: UTF8.self)
            }
        }
    }

    deinit {
        close(fd)
    }
}
