import CBatonShim
import Foundation
import Glibc
import Testing

@testable import Baton

/// What the steering program does with the datagrams of existing flows (`flows`), on
/// real UDP sockets in a private network namespace (SteeringGroupTests' helpers).
@Suite(.enabled(if: SteeringKernel.unavailable == nil, Comment(rawValue: SteeringKernel.unavailable ?? "")))
struct SteeringFlowTests {
    /// `tuple`: a flow stays with the socket its first datagram went to while that socket
    /// is open; a new flow goes to the rotation; a flow whose socket closed goes to the
    /// rotation, never to the closed socket.
    @Test func aFlowStaysWithItsSocketWhileItIsOpen() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> [String: [Int]] in
            var group = try Flow.group(3)
            defer { group.fds.forEach { if $0 >= 0 { _ = close($0) } } }
            let steering = try SteeringGroup(capacity: 4, flowCapacity: 64)
            try steering.attach(to: group.fds[0])
            try steering.configure(.tuple, idleTimeout: .seconds(3600))
            try steering.steer(to: [group.fds[0]])
            let old = try Flow.clients(20, port: group.port)
            defer { old.forEach { _ = close($0) } }
            var outcome: [String: [Int]] = [:]
            outcome["first"] = try Flow.send(from: old, to: group)
            try steering.steer(to: [group.fds[1]])
            outcome["old flows after the swap"] = try Flow.send(from: old, to: group)
            let new = try Flow.clients(20, port: group.port)
            defer { new.forEach { _ = close($0) } }
            outcome["new flows after the swap"] = try Flow.send(from: new, to: group)
            outcome["flows held"] = [group.fds[0], group.fds[1]].map { Int(steering.flows(of: [$0])[$0] ?? 0) }
            Flow.close(&group.fds[0], in: steering)
            outcome["old flows after their socket closed"] = try Flow.send(from: old, to: group)
            let decisions = try #require(steering.decisions())
            outcome["decisions"] = [decisions.cookie, decisions.flow, decisions.new, decisions.fallback].map { Int($0) }
            return outcome
        }
        #expect(outcome["first"] == [20, 0, 0])
        #expect(outcome["old flows after the swap"] == [20, 0, 0])
        #expect(outcome["new flows after the swap"] == [0, 20, 0])
        #expect(outcome["flows held"] == [20, 20])
        #expect(outcome["old flows after their socket closed"] == [0, 20, 0])
        #expect(outcome["decisions"] == [0, 20, 40, 20])
    }

    /// `quic`: a packet whose connection ID carries a socket's cookie goes to that socket
    /// while it is open, in or out of the rotation, from any address (migration); an
    /// unknown cookie and a long header without one go by flow, then to the rotation.
    @Test func aQUICCookieRoutesToItsSocket() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> [String: [Int]] in
            var group = try Flow.group(2)
            defer { group.fds.forEach { if $0 >= 0 { _ = close($0) } } }
            let steering = try SteeringGroup(capacity: 4, flowCapacity: 64)
            try steering.attach(to: group.fds[0])
            try steering.configure(.quic, idleTimeout: .seconds(3600))
            // Socket 1 served once (it has an entry and its cookie is known), socket 0 serves now.
            try steering.steer(to: [group.fds[1]])
            try steering.steer(to: [group.fds[0]])
            let cookie = try #require(QuicCookie.of(group.fds[1]))
            var outcome: [String: [Int]] = [:]
            let clients = try Flow.clients(10, port: group.port)
            defer { clients.forEach { _ = close($0) } }
            outcome["short header, socket 1's cookie"] = try Flow.send(from: clients, to: group, payload: Flow.shortHeader(cookie: cookie))
            let others = try Flow.clients(10, port: group.port)
            defer { others.forEach { _ = close($0) } }
            outcome["long header, socket 1's cookie"] = try Flow.send(from: others, to: group, payload: Flow.longHeader(cookie: cookie))
            let strangers = try Flow.clients(10, port: group.port)
            defer { strangers.forEach { _ = close($0) } }
            outcome["short header, unknown cookie"] = try Flow.send(from: strangers, to: group, payload: Flow.shortHeader(cookie: "0badc0de"))
            outcome["long header, random ID"] = try Flow.send(from: strangers, to: group, payload: Flow.longHeader(cookie: "0badc0de"))
            Flow.close(&group.fds[1], in: steering)
            outcome["socket 1's cookie after it closed"] = try Flow.send(from: clients, to: group, payload: Flow.shortHeader(cookie: cookie))
            let decisions = try #require(steering.decisions())
            outcome["decisions"] = [decisions.cookie, decisions.flow, decisions.new, decisions.fallback].map { Int($0) }
            return outcome
        }
        #expect(outcome["short header, socket 1's cookie"] == [0, 10])
        #expect(outcome["long header, socket 1's cookie"] == [0, 10])
        #expect(outcome["short header, unknown cookie"] == [10, 0])
        #expect(outcome["long header, random ID"] == [10, 0])
        #expect(outcome["socket 1's cookie after it closed"] == [10, 0])
        #expect(outcome["decisions"] == [20, 10, 10, 10])
    }

    /// An idle flow is forgotten: its next datagram goes to the rotation.
    @Test func anIdleFlowIsForgotten() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> [[Int]] in
            let group = try Loopback.group(2, protocol: .udp)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 4, flowCapacity: 64)
            try steering.attach(to: group.fds[0])
            try steering.configure(.tuple, idleTimeout: .milliseconds(200))
            try steering.steer(to: [group.fds[0]])
            let clients = try Flow.clients(10, port: group.port)
            defer { clients.forEach { _ = close($0) } }
            let first = try Flow.send(from: clients, to: group)
            try steering.steer(to: [group.fds[1]])
            // At least the idle time passes; more (a busy machine) changes nothing.
            usleep(400_000)
            return [first, try Flow.send(from: clients, to: group)]
        }
        #expect(outcome == [[10, 0], [0, 10]])
    }

    /// A full flow table forgets its least recently used flows, whose next datagrams go
    /// to the rotation; none is lost.
    @Test func aFullFlowTableEvictsToTheRotation() async throws {
        let outcome = try await PrivateNetwork.run { () throws -> [Int] in
            let group = try Loopback.group(2, protocol: .udp)
            defer { group.fds.forEach { _ = close($0) } }
            let steering = try SteeringGroup(capacity: 4, flowCapacity: 16)
            try steering.attach(to: group.fds[0])
            try steering.configure(.tuple, idleTimeout: .seconds(3600))
            try steering.steer(to: [group.fds[0]])
            let clients = try Flow.clients(64, port: group.port)
            defer { clients.forEach { _ = close($0) } }
            _ = try Flow.send(from: clients, to: group)
            try steering.steer(to: [group.fds[1]])
            return try Flow.send(from: clients, to: group)
        }
        #expect(outcome.reduce(0, +) == 64)
        #expect(outcome[1] >= 64 - 16, "at most the table's 16 flows stay: \(outcome)")
    }
}

/// Clients and datagrams for SteeringFlowTests.
enum Flow {
    /// A UDP group whose sockets no process that other tests start meanwhile inherits,
    /// so that closing one here closes it.
    static func group(_ count: Int) throws -> Loopback.Group {
        let group = try Loopback.group(count, protocol: .udp)
        for fd in group.fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return group
    }

    /// Closes a socket of the group and waits (bounded) until the kernel has emptied its
    /// entry: a process another test forked may hold it until that process executes.
    static func close(_ fd: inout Int32, in steering: SteeringGroup) {
        var cookie: UInt64 = 0
        _ = baton_socket_cookie(fd, &cookie)
        _ = Glibc.close(fd)
        fd = -1
        var handed = steering.handedOver
        for _ in 0..<1000 {
            let held = (0..<UInt32(steering.capacity)).contains { entry in
                var occupant: UInt64 = 0
                return baton_steering_occupant(&handed, entry, &occupant) == 0 && occupant == cookie
            }
            if !held { return }
            usleep(10_000)
        }
    }

    /// `count` UDP clients connected to 127.0.0.1:`port`, each its own flow.
    static func clients(_ count: Int, port: UInt16) throws -> [Int32] {
        try (0..<count).map { _ in try Loopback.connect(port, type: Int32(SOCK_DGRAM.rawValue)) }
    }

    /// Sends `payload` from every client; how many datagrams each socket of the group received.
    static func send(from clients: [Int32], to group: Loopback.Group, payload: [UInt8] = [0x64]) throws -> [Int] {
        for client in clients {
            guard Glibc.send(client, payload, payload.count, 0) == payload.count else { throw SystemError.last("send") }
        }
        var counts = Array(repeating: 0, count: group.fds.count)
        var buffer = [UInt8](repeating: 0, count: 2048)
        var received = 0
        for _ in 0..<20 where received < clients.count {
            for (index, fd) in group.fds.enumerated() where fd >= 0 {
                while recv(fd, &buffer, buffer.count, 0) >= 0 {
                    counts[index] += 1
                    received += 1
                }
            }
            if received == clients.count { break }
            var polled = group.fds.filter { $0 >= 0 }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = poll(&polled, nfds_t(polled.count), 500)
        }
        return counts
    }

    static func bytes(ofCookie hex: String) -> [UInt8] {
        stride(from: 0, to: 8, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
    }

    /// A QUIC short header (1-RTT) whose 8-byte destination connection ID carries `cookie`
    /// in bytes 1 to 4.
    static func shortHeader(cookie: String) -> [UInt8] {
        [0x40, 0xAA] + bytes(ofCookie: cookie) + [1, 2, 3] + Array(repeating: 0, count: 24)
    }

    /// A QUIC long header (Handshake) whose 8-byte destination connection ID carries `cookie`.
    static func longHeader(cookie: String) -> [UInt8] {
        [0xE0, 0, 0, 0, 1, 8, 0xAA] + bytes(ofCookie: cookie) + [1, 2, 3] + [0] + Array(repeating: 0, count: 24)
    }
}
