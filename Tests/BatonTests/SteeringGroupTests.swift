import BatonLoad
import CBatonShim
import CBatonTestSupport
import Foundation
import Glibc
import Testing

@testable import Baton

/// What the kernel does with a steering program attached, measured on real sockets.
/// Each test runs in a private network namespace (loopback only), so that its ports and
/// the namespace's `TCPMigrateReq*` counters are its own.
@Suite(.enabled(if: SteeringKernel.unavailable == nil, Comment(rawValue: SteeringKernel.unavailable ?? "")))
struct SteeringGroupTests {
    @Test func onlySocketsInRotationTakeConnections() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> (counts: [Int], selections: [UInt64?]) in
            let group = try Loopback.group(4)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 8)
            try steering.attach(to: group.fds[0])
            try steering.steer(to: [group.fds[1], group.fds[3]])
            let counts = try Loopback.connections(200, to: group)
            return (counts, group.fds.map { steering.selections(of: $0) })
        }
        #expect(outcome.counts[0] == 0 && outcome.counts[2] == 0, "\(outcome.counts)")
        #expect(outcome.counts[1] + outcome.counts[3] == 200, "\(outcome.counts)")
        #expect(outcome.counts[1] > 0 && outcome.counts[3] > 0, "both sockets in rotation take a share: \(outcome.counts)")
        // The program's own count of what it gave each socket; 0 and 2 hold no entry.
        #expect(outcome.selections == [nil, UInt64(outcome.counts[1]), nil, UInt64(outcome.counts[3])])
    }

    @Test func aNewRotationTakesEveryNewConnection() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> (before: [Int], after: [Int], empty: SystemError?, kept: [Int]) in
            let group = try Loopback.group(4)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 8)
            try steering.attach(to: group.fds[0])
            try steering.steer(to: [group.fds[1], group.fds[3]])
            let before = try Loopback.connections(50, to: group)
            try steering.steer(to: [group.fds[0]])
            let after = try Loopback.connections(200, to: group)
            // Refused, and the rotation stays.
            var empty: SystemError?
            do throws(SystemError) { try steering.steer(to: []) } catch { empty = error }
            return (before, after, empty, try Loopback.connections(50, to: group))
        }
        #expect(outcome.before[0] == 0 && outcome.before[1] + outcome.before[3] == 50, "\(outcome.before)")
        #expect(outcome.after == [200, 0, 0, 0])
        #expect(outcome.empty?.errno == EINVAL)
        #expect(outcome.kept == [50, 0, 0, 0])
    }

    /// Before the first rotation (`count` 0) the program selects nothing and the kernel
    /// hashes over the whole group.
    @Test func withoutARotationTheKernelChooses() async throws {
        let counts = try await PrivateNetwork.run { () throws -> [Int] in
            let group = try Loopback.group(4)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 8)
            try steering.attach(to: group.fds[0])
            return try Loopback.connections(200, to: group)
        }
        #expect(counts.reduce(0, +) == 200)
        #expect(counts.allSatisfy { $0 > 0 }, "the kernel's hash spreads them over every socket: \(counts)")
    }

    enum Retirement: String, CaseIterable {
        case close, shutdown
    }

    /// Connections queued in a socket that leaves the rotation and then closes (or stops
    /// listening) move to the socket in rotation, and their clients never notice.
    @Test(arguments: Retirement.allCases)
    func queuedConnectionsMigrateToTheRotation(_ retirement: Retirement) async throws {
        let outcome = try await Self.retire(queued: 16, by: retirement, steered: true)
        #expect(outcome.queuedBefore == 16)
        #expect(outcome.success == 16)
        #expect(outcome.failure == 0)
        #expect(outcome.accepted == 16)
        #expect(outcome.answered == 16, "every client is still connected: none was reset")
    }

    /// The control: without the program (and with `tcp_migrate_req` at its default 0, as
    /// in a new network namespace), the same connections are reset.
    @Test(arguments: Retirement.allCases)
    func withoutTheProgramQueuedConnectionsAreReset(_ retirement: Retirement) async throws {
        let outcome = try await Self.retire(queued: 16, by: retirement, steered: false)
        #expect(outcome.queuedBefore == 16)
        #expect(outcome.success == 0)
        #expect(outcome.accepted == 0)
        #expect(outcome.answered == 0)
    }

    struct Retired: Sendable {
        var queuedBefore: UInt32?
        /// Growth of TCPMigrateReqSuccess and TCPMigrateReqFailure.
        var success: Int
        var failure: Int
        var accepted: Int
        var answered: Int
    }

    /// Queues connections in one socket of a group of two, takes it out of rotation (or,
    /// unsteered, leaves the kernel's hash to pick), retires it, and accepts from the other.
    static func retire(queued: Int, by retirement: Retirement, steered: Bool) async throws -> Retired {
        try await PrivateNetwork.run {
            let group = try Loopback.group(2)
            let (leaving, staying) = (group.fds[0], group.fds[1])
            var leavingIsOpen = true
            defer {
                if leavingIsOpen { close(leaving) }
                close(staying)
            }
            let steering = try SteeringGroup(capacity: 4)
            defer { steering.close() }
            if steered {
                try steering.attach(to: staying)
                try steering.steer(to: [leaving])
            } else {
                // Nothing listens on the other socket yet, so every connection queues in `leaving`.
                guard shutdown(staying, Int32(SHUT_RD)) == 0 else { throw SystemError.last("shutdown") }
            }
            let clients = try (0..<queued).map { _ in try Loopback.connect(group.port) }
            defer { clients.forEach { _ = close($0) } }
            let queuedBefore = ListenerSocket.acceptQueue(leaving)?.depth
            let before = try MigrationCounters.read()
            if steered {
                try steering.steer(to: [staying])
            } else {
                guard listen(staying, 512) == 0 else { throw SystemError.last("listen") }
            }
            switch retirement {
            case .close:
                close(leaving)
                leavingIsOpen = false
            case .shutdown:
                guard shutdown(leaving, Int32(SHUT_RD)) == 0 else { throw SystemError.last("shutdown") }
            }
            // Steered, all of them are coming: wait for them as long as a busy machine needs.
            let accepted = Loopback.accept(queued, from: staying, rounds: steered ? 60 : 3)
            defer { accepted.forEach { _ = close($0) } }
            // Read once the connections were accepted: a process forked meanwhile by
            // another test holds a copy of `leaving` until its exec, and the socket
            // closes, and its queue migrates, only when that copy goes.
            let after = try MigrationCounters.read()
            let answered = Loopback.exchange(clients: clients, accepted: accepted)
            return Retired(
                queuedBefore: queuedBefore, success: after.success - before.success,
                failure: after.failure - before.failure, accepted: accepted.count, answered: answered)
        }
    }

    /// `shutdown` then `listen` puts a socket back into its group, if it was bound to its
    /// port explicitly: one bound to port 0 loses the port when it stops listening, and
    /// `listen` gives it a new one (the kernel keeps a port only if the user chose it).
    @Test func aSocketThatStoppedListeningRejoinsWithListen() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> (whileOut: [Int], back: [Int], selections: UInt64?, ports: [UInt16]) in
            let group = try Loopback.group(2)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 4)
            try steering.attach(to: group.fds[0])
            try steering.steer(to: [group.fds[0]])
            guard shutdown(group.fds[1], Int32(SHUT_RD)) == 0 else { throw SystemError.last("shutdown") }
            let whileOut = try Loopback.connections(20, to: group)
            guard listen(group.fds[1], 512) == 0 else { throw SystemError.last("listen") }
            try steering.steer(to: [group.fds[1]])
            let back = try Loopback.connections(100, to: group)
            // The first socket, bound to port 0.
            guard shutdown(group.fds[0], Int32(SHUT_RD)) == 0, listen(group.fds[0], 512) == 0 else {
                throw SystemError.last("shutdown and listen")
            }
            return (whileOut, back, steering.selections(of: group.fds[1]), try group.fds.map { try Loopback.port(of: $0) } + [group.port])
        }
        #expect(outcome.whileOut == [20, 0])
        #expect(outcome.back == [0, 100])
        #expect(outcome.selections == 100)
        #expect(outcome.ports[1] == outcome.ports[2], "the explicitly bound socket kept its port")
        #expect(outcome.ports[0] != outcome.ports[2], "the socket bound to port 0 got another port")
    }

    @Test func datagramsGoToTheRotation() async throws {
        let counts = try await PrivateNetwork.run { () throws -> [Int] in
            let group = try Loopback.group(2, protocol: .udp)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 2)
            try steering.attach(to: group.fds[0])
            try steering.steer(to: [group.fds[1]])
            return try Loopback.datagrams(40, to: group)
        }
        #expect(counts == [0, 40])
    }

    /// Without `CAP_BPF` (what Baton falls back from), creating a group fails naming the
    /// call and `EPERM`. Checked in a copy of this test process with every capability
    /// dropped, running `SteeringProbe`.
    @Test func withoutCapBPFCreatingFails() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("baton-steering-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: report) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = [
            "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--",
            try FileContents.link("/proc/self/exe"), "--testing-library", "swift-testing",
            "--filter", "SteeringProbe",
        ]
        process.environment = ProcessInfo.processInfo.environment.merging(["BATON_STEERING_PROBE_REPORT": report.path]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let written = try String(contentsOf: report, encoding: .utf8)
        #expect(written.hasPrefix("bpf \(EPERM) "), "\(written)")
        #expect(written.contains("Operation not permitted"), "\(written)")
    }
}

/// The unprivileged half of `SteeringGroupTests.withoutCapBPFCreatingFails`, outside
/// that suite so that the suite's own check for BPF does not skip it.
@Suite struct SteeringProbe {
    @Test(
        .enabled(
            if: ProcessInfo.processInfo.environment["BATON_STEERING_PROBE_REPORT"] != nil,
            "runs only as the unprivileged copy started by SteeringGroupTests.withoutCapBPFCreatingFails"))
    func unprivileged() throws {
        let path = try #require(ProcessInfo.processInfo.environment["BATON_STEERING_PROBE_REPORT"])
        let report: String
        do {
            _ = try SteeringGroup(capacity: 4)
            report = "created"
        } catch {
            report = "\(error.call) \(error.errno) \(error)"
        }
        try report.write(toFile: path, atomically: false, encoding: .utf8)
    }
}

/// Why the kernel cannot steer here, or nil.
enum SteeringKernel {
    static let unavailable: String? = {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2, (numbers[0], numbers[1]) >= (5, 14) else {
            return "steering needs Linux 5.14 or later (BPF_SK_REUSEPORT_SELECT_OR_MIGRATE); this is \(release)"
        }
        do {
            _ = try SteeringGroup(capacity: 1)
        } catch {
            return "BPF steering is unavailable here: \(error)"
        }
        for tool in ["/usr/bin/unshare", "/usr/bin/setpriv"] where access(tool, X_OK) != 0 {
            return "the steering tests need \(tool)"
        }
        return nil
    }()
}

/// Runs a test's socket work on a thread of its own in a private network namespace with
/// loopback up. Sockets keep the namespace they were made in; the counters in
/// /proc/thread-self/net are the namespace's.
enum PrivateNetwork {
    static func run<Outcome: Sendable>(_ body: @escaping @Sendable () throws -> Outcome) async throws -> Outcome {
        let holder = Process()
        let input = Pipe()
        let output = Pipe()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        holder.arguments = [
            "--net", "--", "/bin/sh", "-c",
            "PATH=/usr/sbin:/sbin:$PATH ip link set lo up && echo ready && read line",
        ]
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        let pid = holder.processIdentifier
        defer {
            kill(pid, SIGKILL)
            holder.waitUntilExit()
        }
        let ready = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        guard ready.hasPrefix("ready") else { throw SystemError("unshare", errno: EIO, subject: "a private network namespace") }
        return try await withCheckedThrowingContinuation { continuation in
            Thread {
                let error = baton_enter_network_namespace(pid)
                guard error == 0 else {
                    continuation.resume(throwing: SystemError("setns", errno: error, subject: "network namespace of \(pid)"))
                    return
                }
                continuation.resume(with: Result { try body() })
            }.start()
        }
    }
}

/// Sockets on 127.0.0.1 of the calling thread's network namespace.
enum Loopback {
    struct Group {
        var fds: [Int32]
        var port: UInt16
    }

    enum Kind {
        case tcp, udp
    }

    /// `count` sockets of one reuseport group, made as Baton makes them, non-blocking; the
    /// first on a port the kernel chooses, the others on the same port.
    static func group(_ count: Int, protocol kind: Kind = .tcp) throws -> Group {
        var group = Group(fds: [], port: 0)
        for _ in 0..<count {
            let address: ListenerAddress =
                kind == .tcp
                ? .tcp(host: "127.0.0.1", port: group.port)
                : .udp(host: "127.0.0.1", port: group.port)
            let fd = try ListenerSocket.open(ListenerConfiguration(name: "steered", address: address), backlog: 512)
            group.fds.append(fd)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            if group.port == 0 {
                group.port = try port(of: fd)
            }
        }
        return group
    }

    /// The local port of a socket (getsockname).
    static func port(of fd: Int32) throws -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { throw SystemError.last("getsockname") }
        return UInt16(bigEndian: address.sin_port)
    }

    static func address(_ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }

    /// A connected client (blocking).
    static func connect(_ port: UInt16, type: Int32 = Int32(SOCK_STREAM.rawValue)) throws -> Int32 {
        let fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.last("socket") }
        var address = address(port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let error = SystemError.last("connect", subject: "127.0.0.1:\(port)")
            close(fd)
            throw error
        }
        return fd
    }

    /// Opens `count` connections, then accepts them from whichever socket of the group
    /// they landed in; how many each socket got.
    static func connections(_ count: Int, to group: Group) throws -> [Int] {
        let clients = try (0..<count).map { _ in try connect(group.port) }
        defer { clients.forEach { _ = close($0) } }
        var counts = Array(repeating: 0, count: group.fds.count)
        try collect(count, from: group.fds) { index, fd in
            let connection = Glibc.accept(fd, nil, nil)
            guard connection >= 0 else { return false }
            close(connection)
            counts[index] += 1
            return true
        }
        return counts
    }

    /// Sends one datagram from each of `count` client sockets (each with a port of its
    /// own); how many each socket of the group received.
    static func datagrams(_ count: Int, to group: Group) throws -> [Int] {
        let clients = try (0..<count).map { _ in try connect(group.port, type: Int32(SOCK_DGRAM.rawValue)) }
        defer { clients.forEach { _ = close($0) } }
        for client in clients {
            guard send(client, "d", 1, 0) == 1 else { throw SystemError.last("send") }
        }
        var counts = Array(repeating: 0, count: group.fds.count)
        var byte: UInt8 = 0
        try collect(count, from: group.fds) { index, fd in
            guard recv(fd, &byte, 1, 0) >= 0 else { return false }
            counts[index] += 1
            return true
        }
        return counts
    }

    /// Takes `count` arrivals from non-blocking `fds` with `take`, which returns false
    /// when a socket has nothing more; waits (bounded) for stragglers.
    private static func collect(_ count: Int, from fds: [Int32], rounds: Int = 20, take: (Int, Int32) -> Bool) throws {
        var taken = 0
        for _ in 0..<rounds {
            for (index, fd) in fds.enumerated() {
                while taken < count, take(index, fd) { taken += 1 }
            }
            if taken == count { return }
            var polled = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = poll(&polled, nfds_t(polled.count), 500)
        }
        throw SystemError("accept", errno: ETIMEDOUT, subject: "\(taken) of \(count) arrived")
    }

    /// Accepts up to `count` connections queued in `fd`, waiting up to `rounds` half
    /// seconds for stragglers.
    static func accept(_ count: Int, from fd: Int32, rounds: Int = 3) -> [Int32] {
        var accepted: [Int32] = []
        try? collect(count, from: [fd], rounds: rounds) { _, fd in
            let connection = Glibc.accept(fd, nil, nil)
            guard connection >= 0 else { return false }
            accepted.append(connection)
            return true
        }
        return accepted
    }

    /// Each client sends a byte, each accepted connection answers the byte it reads;
    /// how many clients got their answer.
    static func exchange(clients: [Int32], accepted: [Int32]) -> Int {
        var byte: UInt8 = 0
        for client in clients {
            _ = send(client, "q", 1, Int32(MSG_NOSIGNAL))
        }
        for connection in accepted where wait(connection) && recv(connection, &byte, 1, 0) == 1 {
            _ = send(connection, "a", 1, Int32(MSG_NOSIGNAL))
        }
        return clients.filter { wait($0) && recv($0, &byte, 1, 0) == 1 && byte == UInt8(ascii: "a") }.count
    }

    /// Whether `fd` becomes readable within a bound.
    private static func wait(_ fd: Int32) -> Bool {
        var polled = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&polled, 1, 5000) == 1
    }
}
