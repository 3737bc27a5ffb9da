import BatonCore
import BatonLoad
import Foundation
import Glibc

/// `baton-bench --flows`: what `flows` on a UDP listener costs and buys (Docs/benchmarks.md,
/// "UDP flows"): the steering program's CPU time per datagram in each mode against a
/// listener without the program, measured in one run, and how many QUIC connections
/// break per 1,000 reloads in each mode.
struct FlowBench {
    let products: String
    /// Folder of quic_server.py and quic_client.py (Tests/BatonIntegrationTests/Servers/quic).
    let quicServers: String
    let datagrams: Int
    let reloads: Int

    /// The listeners compared: `shared` is one socket, no program (the baseline).
    static let modes = ["shared", "none", "tuple", "quic"]

    /// A Baton serving one UDP listener in `mode` with `command` as its two workers.
    final class Service {
        let process: ServerProcess
        let port: Int
        let control: String
        let directory: String

        init(products: String, mode: String, command: [String], readiness: String) throws {
            port = try LoadTarget.freeLoopbackPort()
            directory = NSTemporaryDirectory() + "baton-bench-flows-\(getpid())-\(mode)-\(port)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            control = "\(directory)/baton.sock"
            let listener = mode == "shared" ? "reuseport = \"shared\"" : "flows = \"\(mode)\""
            try """
            [[listener]]
            name = "flows"
            address = "udp://127.0.0.1:\(port)"
            \(listener)

            [workers]
            command = [\(command.map { "\"\($0)\"" }.joined(separator: ", "))]
            count = 2
            readiness = "\(readiness)"
            drain_timeout = "60s"
            """.write(toFile: "\(directory)/baton.toml", atomically: true, encoding: .utf8)
            process = try ServerProcess(["\(products)/baton", "--control", control, "--config", "\(directory)/baton.toml"])
            try waitForStatus("generation 1 serving") { $0.generations.contains { $0.role == .serving } && $0.phase == .running }
        }

        func status() throws -> StatusReport? {
            try ControlClient.send(ControlRequest(command: .status), to: control).status
        }

        func waitForStatus(_ what: String, _ condition: (StatusReport) -> Bool) throws {
            for _ in 0..<3000 {
                guard process.isRunning else { throw BenchFailure("baton (\(directory)) exited before \(what)") }
                if let status = try? status(), condition(status) { return }
                usleep(20_000)
            }
            throw BenchFailure("baton (\(directory)) never showed \(what)")
        }

        func reload() throws {
            let reply = try ControlClient.send(ControlRequest(command: .reload, wait: true), to: control)
            guard reply.ok else { throw BenchFailure("a reload failed: \(reply)") }
        }

        func stop() {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    struct BenchFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// CPU time of the sending thread per datagram, by mode. On loopback the kernel
    /// delivers a datagram, socket lookup and steering program included, in the sender's
    /// system call, so the sender's CPU time carries the program's cost. The workers never
    /// read: datagrams are dropped at a full receive buffer, after the program ran. Rounds
    /// alternate the modes so that a busy machine weighs on all alike.
    func costPerDatagram() throws -> [String: Double] {
        let services = try Self.modes.map {
            try Service(products: products, mode: $0, command: ["sleep", "86400"], readiness: "delay:100ms")
        }
        defer { services.forEach { $0.stop() } }
        // 64 flows per listener; a QUIC short header whose cookie no socket has.
        let clients = services.map { service in
            (0..<64).map { _ in connectedUDPSocket(port: service.port) }
        }
        defer { clients.joined().forEach { _ = close($0) } }
        let payload: [UInt8] = [0x40, 0x01, 0xDE, 0xAD, 0xBE, 0xEF] + Array(repeating: 0x5A, count: 42)
        var nanoseconds = Array(repeating: UInt64(0), count: services.count)
        let rounds = 10
        let perRound = max(1, datagrams / rounds)
        for _ in 0..<rounds {
            for index in services.indices {
                let start = threadCPUTime()
                for number in 0..<perRound {
                    _ = send(clients[index][number & 63], payload, payload.count, Int32(MSG_DONTWAIT))
                }
                nanoseconds[index] += threadCPUTime() - start
            }
        }
        var result: [String: Double] = [:]
        for (index, mode) in Self.modes.enumerated() {
            result[mode] = Double(nanoseconds[index]) / Double(perRound * rounds)
        }
        return result
    }

    /// QUIC connections broken per 1,000 reloads in each mode: 16 connections (each
    /// opened anew when it breaks) pinging while `reloads` reloads happen.
    func quicBreaksPerThousandReloads() throws -> [String: Double] {
        var result: [String: Double] = [:]
        for mode in ["none", "tuple", "quic"] {
            let service = try Service(
                products: products, mode: mode, command: ["python3", "\(quicServers)/quic_server.py"], readiness: "notify")
            defer { service.stop() }
            let stop = "\(service.directory)/stop"
            let client = Process()
            let output = Pipe()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = ["python3", "\(quicServers)/quic_client.py", "run", "\(service.port)", stop, "16", "0", "reconnect"]
            client.standardOutput = output
            try client.run()
            usleep(1_000_000)
            for _ in 0..<reloads { try service.reload() }
            guard FileManager.default.createFile(atPath: stop, contents: nil) else {
                client.terminate()
                throw BenchError("cannot create \(stop), which tells the QUIC client to stop")
            }
            let data = output.fileHandleForReading.readDataToEndOfFile()
            client.waitUntilExit()
            struct Seen: Decodable { var broken: [String] }
            let seen = try JSONDecoder().decode(Seen.self, from: data)
            result[mode] = Double(seen.broken.count) * 1000 / Double(reloads)
        }
        return result
    }

    func markdown(cost: [String: Double], breaks: [String: Double]?) -> String {
        var text = "## UDP flows\n\n"
        text += "Sender CPU time per datagram through the listener (\(datagrams) datagrams per mode, 64 flows, rounds alternating):\n\n"
        text += "| listener | ns per datagram | against no program |\n|---|---|---|\n"
        let baseline = cost["shared"] ?? 0
        for mode in Self.modes {
            let value = cost[mode] ?? 0
            let name = mode == "shared" ? "`shared` (no program)" : "`flows = \"\(mode)\"`"
            text += "| \(name) | \(String(format: "%.0f", value)) | \(String(format: "%.3f", baseline > 0 ? value / baseline : 0)) |\n"
        }
        if let breaks {
            text += "\nQUIC connections broken per 1,000 reloads (16 connections, \(reloads) reloads per mode):\n\n"
            text += "| flows | broken per 1,000 reloads |\n|---|---|\n"
            for mode in ["none", "tuple", "quic"] {
                text += "| `\(mode)` | \(String(format: "%.0f", breaks[mode] ?? 0)) |\n"
            }
        }
        return text
    }
}

private func connectedUDPSocket(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return fd
}

private func threadCPUTime() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
