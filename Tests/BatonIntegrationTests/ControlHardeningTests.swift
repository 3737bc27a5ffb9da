import BatonCore
import Foundation
import Testing

/// Bad input to the configuration and the control socket, and a log reader that does not
/// read: each gets a clear error or is contained, and Baton keeps serving, answering and
/// stopping (issue 13; Docs/security.md, "Control socket and configuration input").
@Suite(.serialized) struct ControlHardeningTests {
    static let configuration = """
        [workers]
        command = ["/bin/sleep", "1000"]
        count = 2
        readiness = "delay:50ms"
        drain_timeout = "5s"
        """

    /// Values out of range, as written in `[workers]`, and the start of the error each gets.
    static let outOfRange: [(line: String, error: String)] = [
        ("drain_timeout = \"1e300s\"", "workers.drain_timeout = \"1e300s\": out of range"),
        ("ready_timeout = \"1e10s\"", "workers.ready_timeout = \"1e10s\": out of range"),
        ("ready_timeout = \"0s\"", "workers.ready_timeout = \"0s\": out of range"),
        ("drain_grace = \"48h\"", "workers.drain_grace = \"48h\": out of range"),
        ("restart_delay = \"0s\"", "workers.restart_delay = \"0s\": out of range"),
        ("restart_delay_max = \"1e12s\"", "workers.restart_delay_max = \"1e12s\": out of range"),
        ("drain_signal = \"STOP\"", "workers.drain_signal = \"STOP\": this signal cannot tell a worker to drain"),
        ("drain_signal = \"CONT\"", "workers.drain_signal = \"CONT\": this signal cannot tell a worker to drain"),
        ("readiness = \"delay:25h\"", "workers.readiness = \"delay:25h\": out of range"),
        ("count = 5000", "workers.count = 5000: expected a number of workers from 1 to 1024"),
    ]

    /// ``configuration`` with `line` in place of the line of the same key.
    static func configuration(with line: String) -> String {
        let key = line.prefix { $0 != " " }
        return configuration.split(separator: "\n").filter { !$0.hasPrefix(key + " ") }.joined(separator: "\n") + "\n" + line + "\n"
    }

    @Test func aReloadWithAValueOutOfRangeIsRefusedNamingItAndTheOldGenerationServesOn() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration)
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        let before = try baton.waitUntilServing()
        for (line, error) in Self.outOfRange {
            try scratch.write("baton.toml", Self.configuration(with: line))
            let reply = try ControlClient.send(
                ControlRequest(command: .reload, wait: true), to: baton.controlSocket,
                timeout: .seconds(60))
            #expect(!reply.ok)
            #expect(reply.error?.contains("baton.toml: " + error) == true, "\(line): \(reply)")
            let after = try baton.status()
            #expect(after.generations.map(\.number) == [1], "\(line)")
            #expect(after.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid), "\(line)")
            #expect(after.generations[0].workers.allSatisfy { $0.state == .ready }, "\(line)")
        }
        // A file on which the TOML parser (toml++) fails an assertion: refused, naming the
        // line; the serving Baton is not the process that aborts.
        try scratch.write("baton.toml", Self.configuration + "\n[é]\n")
        let aborting = try ControlClient.send(
            ControlRequest(command: .reload, wait: true), to: baton.controlSocket,
            timeout: .seconds(60))
        #expect(!aborting.ok)
        #expect(aborting.error?.contains("baton.toml:6: not valid TOML: the TOML parser (toml++) stopped with SIGABRT") == true, "\(aborting)")
        #expect(try baton.status().generations.map(\.number) == [1])
        // The control socket cannot move at a reload: refused, saying where it stays.
        try scratch.write("baton.toml", "control_socket = \"\(scratch.path)/elsewhere.sock\"\n" + Self.configuration)
        let moved = try ControlClient.send(ControlRequest(command: .reload, wait: true), to: baton.controlSocket, timeout: .seconds(60))
        #expect(!moved.ok)
        #expect(
            moved.error?.contains(
                "control_socket = \"\(scratch.path)/elsewhere.sock\": the control socket cannot move at a reload; it stays at \"\(baton.controlSocket)\"")
                == true,
            "\(moved)")
        #expect(try baton.status().generations.map(\.number) == [1])
        // And a good configuration still reloads.
        try scratch.write("baton.toml", Self.configuration)
        #expect(try baton.reload().ok)
        try baton.waitUntilServing(generation: 2)
        #expect(baton.stop() == 0)
    }

    /// A configuration that takes long to read (a FIFO nobody writes to yet) stops
    /// nothing: status and /metrics answer, and a worker killed meanwhile is restarted in
    /// its slot; once the file comes, the reload (answered once the file is read) completes.
    /// Before, the event loop read the file itself: the reload request went unanswered
    /// and the exit unnoticed for as long as the read took.
    @Test func aSlowConfigurationStopsNothing() throws {
        let scratch = ScratchDirectory()
        let metricsPort = freePort()
        let configuration = "metrics = \"tcp://127.0.0.1:\(metricsPort)\"\n" + Self.configuration
        try scratch.write("baton.toml", configuration)
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        let before = try baton.waitUntilServing()
        let path = "\(scratch.path)/baton.toml"
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        // Releases a reader blocked on the FIFO; does nothing when there is none.
        func release(_ text: String) {
            let fd = open(path, O_WRONLY | O_NONBLOCK)
            guard fd >= 0 else { return }
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        defer { release("") }
        let reload = Process()
        reload.executableURL = URL(fileURLWithPath: Products.path("batonctl"))
        reload.arguments = ["reload", "--timeout", "120", "-s", baton.controlSocket]
        try reload.run()
        let victim = try #require(before.generations[0].workers.first { $0.slot == 0 }?.pid)
        kill(victim, SIGKILL)
        let restarted = try baton.waitForStatus("slot 0 restarted while the configuration is read") { status in
            status.generations.map(\.number) == [1]
                && status.generations[0].workers.contains { $0.slot == 0 && $0.pid != nil && $0.pid != victim && $0.state == .ready }
        }
        #expect(restarted.generations[0].workers.first { $0.slot == 0 }?.restarts == 1)
        let scrape = try run(
            "/usr/bin/curl",
            [
                "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                "http://127.0.0.1:\(metricsPort)/metrics",
            ])
        #expect(scrape.output == "200")
        release(configuration)
        #expect(waitForExit(reload, timeout: 120) == 0, "the reload is answered once the file is read")
        try baton.waitUntilServing(generation: 2)
        #expect(baton.stop() == 0)
    }

    @Test func aValueOutOfRangeAtStartIsAnErrorNamingIt() throws {
        let scratch = ScratchDirectory()
        for (line, error) in Self.outOfRange {
            try scratch.write("baton.toml", Self.configuration(with: line))
            let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
            #expect(Self.refusedToStart(baton), "\(line)")
            #expect(baton.log.contains("\(scratch.path)/baton.toml: " + error), "\(line): \(baton.log)")
        }
    }

    /// Baton's standard output is a pipe nobody reads; a worker writes much more than a
    /// pipe holds. Status, reload and SIGTERM work all along, and the drops are counted.
    @Test func aLogReaderThatDoesNotReadStallsNothing() throws {
        let scratch = ScratchDirectory()
        let unread = Pipe()
        let baton = try BatonUnderTest(
            [
                "--output", "prefix", "--ready", "delay:50ms", "--drain-timeout", "5s", "--",
                "/bin/sh", "-c", "yes 0123456789012345678901234567890123456789 | head -c 8000000; exec sleep 1000",
            ], in: scratch, output: unread)
        try baton.waitUntilServing()
        // Starting the new generation's worker is what the old relay blocked.
        let reply = try ControlClient.send(ControlRequest(command: .reload, wait: true), to: baton.controlSocket, timeout: .seconds(60))
        #expect(reply.ok, "\(reply)")
        try baton.waitUntilServing(generation: 2)
        let after = try baton.waitForStatus("dropped output") { ($0.droppedOutputBytes ?? 0) > 0 }
        let droppedBytes = try #require(after.droppedOutputBytes)
        #expect(StatusFormatter.table(after).contains("worker output dropped: \(droppedBytes) bytes"))
        let prometheus = try run(Products.path("batonctl"), ["status", "--prometheus", "-s", baton.controlSocket])
        #expect(prometheus.output.contains("baton_dropped_output_bytes "), "\(prometheus.output)")
        print("dropped \(droppedBytes) bytes of worker output")
        #expect(baton.stop() == 0)
        _ = unread
    }

    /// Far more idle connections than the cap: the oldest idle ones are closed, and a
    /// status request still gets its answer.
    @Test func idleConnectionsBeyondTheCapAreClosedAndStatusStillAnswers() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let idle = try (0..<60).map { _ in try Self.connect(to: baton.controlSocket) }
        defer { idle.forEach { close($0) } }
        #expect(try baton.status().phase == .running)
        let closed = Self.waitForClosed(idle, atLeast: 60 - 16)
        print("\(closed) of 60 idle control connections were closed by Baton")
        #expect(closed >= 60 - 16)
        #expect(baton.stop() == 0)
    }

    /// A connection that never sends its request is closed (after 10 s).
    @Test func aConnectionThatSendsNothingIsClosed() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let fd = try Self.connect(to: baton.controlSocket)
        defer { close(fd) }
        #expect(Self.waitForClosed([fd], atLeast: 1, timeout: 60) == 1)
        #expect(baton.stop() == 0)
    }

    /// A request line without end: an error reply, the connection closed, memory bounded.
    @Test func anOverlongRequestGetsAnErrorAndMemoryStaysBounded() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let fd = try Self.connect(to: baton.controlSocket)
        defer { close(fd) }
        Self.setReceiveTimeout(fd, seconds: 60)
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        var sent = 0
        while sent < 200 << 20 {
            let count = chunk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { break }
            sent += count
        }
        let reply = Self.readAll(fd)
        #expect(reply.contains(#""ok":false"#) && reply.contains("the request is longer than 65536 bytes"), "\(reply)")
        let peak = try Self.peakMemoryKilobytes(of: baton.process.processIdentifier)
        print("sent \(sent >> 10) KiB before Baton closed; its VmHWM is \(peak) kB")
        #expect(peak < 100_000)
        #expect(try baton.status().phase == .running)
        #expect(baton.stop() == 0)
    }

    /// With few descriptors and many idle connections, status requests cost little CPU
    /// (no retrying accept in a loop) and a crashed worker is still restarted.
    @Test func withFewDescriptorsIdleConnectionsNeitherSpinNorStarveWorkers() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            ["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch,
            launcher: ["/usr/bin/prlimit", "--nofile=48:48", "--"])
        let serving = try baton.waitUntilServing()
        let idle = try (0..<60).map { _ in try Self.connect(to: baton.controlSocket) }
        defer { idle.forEach { close($0) } }
        let pid = baton.process.processIdentifier
        let before = try Self.cpuTicks(of: pid)
        for _ in 0..<50 {
            _ = try ControlClient.send(ControlRequest(command: .status), to: baton.controlSocket, timeout: .seconds(30))
        }
        let ticks = try Self.cpuTicks(of: pid) - before
        print("50 status requests beside 60 idle connections with 48 descriptors: \(ticks) ticks of CPU")
        #expect(ticks < 200)
        kill(try #require(serving.generations[0].workers[0].pid), SIGKILL)
        _ = try baton.waitForStatus("the restarted worker") { status in
            let worker = status.generations.first?.workers.first { $0.slot == 0 }
            return worker?.restarts == 1 && worker?.state == .ready
        }
        #expect(baton.stop() == 0)
    }

    /// Out of descriptors altogether (its limit lowered to one more than it has open),
    /// Baton pauses between failing accepts and closes idle connections to answer, rather
    /// than retrying accept in a loop.
    @Test func outOfDescriptorsTheControlServerPausesInsteadOfSpinning() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let pid = baton.process.processIdentifier
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        let lowered = try run("/usr/bin/prlimit", ["--pid", "\(pid)", "--nofile=\(open + 1):\(open + 1)"])
        #expect(lowered.status == 0, "\(lowered.output)")
        let idle = try (0..<30).map { _ in try Self.connect(to: baton.controlSocket) }
        defer { idle.forEach { close($0) } }
        let before = try Self.cpuTicks(of: pid)
        for _ in 0..<20 {
            _ = try ControlClient.send(ControlRequest(command: .status), to: baton.controlSocket, timeout: .seconds(60))
        }
        let ticks = try Self.cpuTicks(of: pid) - before
        print("20 status requests beside 30 idle connections with \(open + 1) descriptors (\(open) open): \(ticks) ticks of CPU")
        #expect(ticks < 200)
        #expect(baton.stop() == 0)
    }

    /// `socat` and `nc -N` half-close after the request: the answer still comes.
    @Test func aClientThatHalfClosesGetsItsReloadAnswer() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        try baton.waitUntilServing()
        let fd = try Self.connect(to: baton.controlSocket)
        defer { close(fd) }
        Self.setReceiveTimeout(fd, seconds: 60)
        let request = ControlRequest(command: .reload, wait: true).encodedLine()
        _ = request.withCString { write(fd, $0, strlen($0)) }
        shutdown(fd, Int32(SHUT_WR))
        let answer = Self.readAll(fd)
        let final = answer.split(separator: "\n").compactMap { ControlReply.decode(String($0)) }.last
        #expect(final?.ok == true && final?.final == true && final?.generation == 2, "answer: \(answer)")
        try baton.waitUntilServing(generation: 2)
        #expect(baton.stop() == 0)
    }

    @Test func aControlPathThatIsARegularFileIsNeitherDeletedNorUsed() throws {
        let scratch = ScratchDirectory()
        let path = "\(scratch.path)/precious.txt"
        try scratch.write("precious.txt", "keep me\n")
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch, controlSocket: path)
        #expect(Self.refusedToStart(baton))
        #expect(baton.log.contains("control socket \(path) (a file that is not a socket is there"), "\(baton.log)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me\n")
    }

    @Test func aControlPathTooLongForAUnixSocketIsNamed() throws {
        let scratch = ScratchDirectory()
        let path = "\(scratch.path)/" + String(repeating: "s", count: 120) + ".sock"
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch, controlSocket: path)
        #expect(Self.refusedToStart(baton))
        #expect(baton.log.contains("control socket \(path) (\(path.utf8.count) bytes; a unix socket path has at most 107)"), "\(baton.log)")
    }

    @Test func aStaleControlSocketIsReplaced() throws {
        let scratch = ScratchDirectory()
        let path = "\(scratch.path)/stale.sock"
        let stale = try Self.bind(path)
        close(stale)
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch, controlSocket: path)
        try baton.waitUntilServing()
        #expect(baton.stop() == 0)
    }

    /// A Baton that accepts nothing and answers nothing: `batonctl --timeout` gives up
    /// with a clear error instead of hanging.
    @Test func batonctlGivesUpOnAStalledBaton() throws {
        let scratch = ScratchDirectory()
        let path = "\(scratch.path)/stalled.sock"
        let fd = try Self.bind(path)
        defer { close(fd) }
        listen(fd, 8)
        let result = try run(Products.path("batonctl"), ["status", "--timeout", "0.5", "-s", path])
        #expect(result.status == 124)
        #expect(result.output.contains("control socket \(path): Baton did not answer within 0.5 seconds"), "\(result.output)")
    }

    // MARK: - Helpers

    /// Whether `baton` exited with a failure by itself; one that serves instead is
    /// stopped with SIGTERM, so that its workers go with it.
    static func refusedToStart(_ baton: BatonUnderTest, timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while baton.process.isRunning && Date() < deadline {
            usleep(20_000)
        }
        guard !baton.process.isRunning else {
            baton.stop()
            return false
        }
        return baton.process.terminationStatus != 0
    }

    static func connect(to path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("connect \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    static func bind(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TestFailure("bind \(path): \(String(cString: strerror(errno)))") }
        return fd
    }

    static func setReceiveTimeout(_ fd: Int32, seconds: Int) {
        var limit = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    /// What `fd` reads until its end (or its receive timeout).
    static func readAll(_ fd: Int32) -> String {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            data += buffer[0..<count]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits (bounded) until Baton closed at least `count` of `descriptors`; returns how many it closed.
    static func waitForClosed(_ descriptors: [Int32], atLeast count: Int, timeout: Double = 30) -> Int {
        var closed = Set<Int32>()
        let deadline = Date().addingTimeInterval(timeout)
        while closed.count < count && Date() < deadline {
            var polled = descriptors.filter { !closed.contains($0) }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), 100) >= 0 else { continue }
            // These connections sent nothing: whatever comes (an end, a refusal) is Baton closing them.
            for entry in polled where entry.revents != 0 {
                closed.insert(entry.fd)
            }
        }
        return closed.count
    }

    /// utime + stime of `pid`, in clock ticks, from /proc/PID/stat.
    static func cpuTicks(of pid: Int32) throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command, which is in parentheses and may hold spaces.
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        // utime and stime are fields 14 and 15; fields[0] is field 3 (state).
        return try #require(Int(fields[11])) + #require(Int(fields[12]))
    }

    /// VmHWM of `pid`, in kB.
    static func peakMemoryKilobytes(of pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return try #require(Int(line.split(separator: " ")[1]))
    }
}
