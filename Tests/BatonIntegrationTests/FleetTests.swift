import BatonCore
import BatonLoad
import Foundation
import Testing

/// The fleet rollout of Docs/fleet, run by the real Ansible on a fleet simulated on this
/// machine: three Batons on 127.0.1.1 to 127.0.1.3, each with its own configuration and
/// control socket, behind HAProxy on 127.0.0.1 (issue 24; Docs/orchestrators.md).
@Suite(.serialized) struct FleetTests {
    static let fleet = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../Docs/fleet").standardized.path
    static let hosts = [("app1", "127.0.1.1"), ("app2", "127.0.1.2"), ("app3", "127.0.1.3")]

    /// What Docs/fleet/baton.toml.j2 makes of a host's variables, for the version the
    /// hosts run before the test's rollout.
    static func configuration(address: String, port: Int, control: String, version: String) -> String {
        """
        control_socket = "\(control)"

        [[listener]]
        name = "http"
        address = "tcp://\(address):\(port)"

        [workers]
        command = ["\(Products.path("baton-demo"))"]
        count = 2
        ready_timeout = "30s"
        drain_timeout = "10s"
        environment = { APP_VERSION = "\(version)" }
        """
    }

    /// Runs the playbook with these extra variables; its exit status and output.
    static func playbook(_ variables: [String: String], in scratch: ScratchDirectory) throws -> (status: Int32, output: String) {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ansible-playbook")
        process.arguments =
            ["-i", "\(fleet)/inventory.ini", "\(fleet)/rollout.yml"]
            + variables.sorted { $0.key < $1.key }.flatMap { ["-e", "\($0.key)=\($0.value)"] }
        process.environment = ProcessInfo.processInfo.environment.merging([
            "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": "\(scratch.path)/ansible",
            "ANSIBLE_HOME": "\(scratch.path)/ansible",
        ]) { $1 }
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func version(at address: String, port: Int) throws -> String? {
        let headers = try run("/usr/bin/curl", ["-s", "--max-time", "10", "-D", "-", "-o", "/dev/null", "http://\(address):\(port)/"]).output
        return headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-version:") }.map {
            $0.dropFirst("x-version:".count).trimmingCharacters(in: .whitespaces)
        }
    }

    @Test func aPlaybookRollsANewVersionAcrossTheFleetLosingNothingAndABrokenOneStopsAtTheFirstHost() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let front = freePort()
        var batons: [String: BatonUnderTest] = [:]
        for (host, address) in Self.hosts {
            try FileManager.default.createDirectory(atPath: "\(scratch.path)/\(host)", withIntermediateDirectories: true)
            let control = "\(scratch.path)/\(host)/baton.sock"
            try scratch.write("\(host)/baton.toml", Self.configuration(address: address, port: port, control: control, version: "1"))
            batons[host] = try BatonUnderTest(["--config", "\(scratch.path)/\(host)/baton.toml"], in: scratch, controlSocket: control)
        }
        for (host, _) in Self.hosts { try batons[host]!.waitUntilServing() }

        try scratch.write(
            "haproxy.cfg",
            """
            defaults
              mode http
              timeout connect 5s
              timeout client 30s
              timeout server 30s
            frontend fleet
              bind 127.0.0.1:\(front)
              default_backend app
            backend app
              balance roundrobin
            \(Self.hosts.map { "  server \($0.0) \($0.1):\(port)" }.joined(separator: "\n"))
            """ + "\n")
        let haproxy = Process()
        haproxy.executableURL = URL(fileURLWithPath: "/usr/sbin/haproxy")
        haproxy.arguments = ["-db", "-f", "\(scratch.path)/haproxy.cfg"]
        haproxy.standardOutput = FileHandle.nullDevice
        haproxy.standardError = FileHandle.nullDevice
        try haproxy.run()
        defer {
            kill(haproxy.processIdentifier, SIGTERM)
            _ = waitForExit(haproxy, timeout: 30)
        }
        _ = try batons["app1"]!.waitForStatus(timeout: 60, "HAProxy answering") { _ in
            (try? Self.version(at: "127.0.0.1", port: front)) == "1"
        }

        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: front))
        configuration.clients = 6
        let load = LoadGenerator(configuration)
        load.start()
        let variables = [
            "fleet_root": scratch.path, "baton_port": "\(port)", "baton_bin": Products.path("baton"),
            "batonctl_bin": Products.path("batonctl"), "app_command": Products.path("baton-demo"),
        ]

        let rollout = try Self.playbook(variables.merging(["app_version": "2"]) { $1 }, in: scratch)
        #expect(rollout.status == 0, "\(rollout.output)")
        for (host, address) in Self.hosts {
            #expect(try Self.version(at: address, port: port) == "2", "\(host)")
            #expect(try batons[host]!.status().generations.map(\.number) == [2] || batons[host]!.status().generations.last?.number == 2)
        }

        // A configuration that baton --check refuses is never installed: the play stops
        // at the first host, which serves on as it was.
        let invalid = try Self.playbook(variables.merging(["app_version": "4\\\"x"]) { $1 }, in: scratch)
        #expect(invalid.status != 0, "\(invalid.output)")
        #expect(invalid.output.contains("failed to validate"), "\(invalid.output)")
        for (host, _) in Self.hosts {
            let text = try String(contentsOfFile: "\(scratch.path)/\(host)/baton.toml", encoding: .utf8)
            #expect(text.contains("APP_VERSION = \"2\""), "\(host) keeps its configuration")
        }
        #expect(try batons["app1"]!.status().reloads.count == 1, "nothing reloaded")

        // A version whose workers exit at start: the first host rolls back, the play stops.
        let broken = try Self.playbook(variables.merging(["app_version": "3", "app_broken": "true"]) { $1 }, in: scratch)
        let report = load.stop()
        print("fleet rollout through HAProxy: \(report.succeeded) requests, \(report.totalFailures) failed")
        #expect(broken.status != 0, "\(broken.output)")
        #expect(broken.output.contains("rolled back"), "\(broken.output)")
        let first = try batons["app1"]!.status()
        #expect(first.reloads.last?.result == .rolledBack)
        #expect(try Self.version(at: "127.0.1.1", port: port) == "2", "the first host serves the old version on")
        for (host, address) in Self.hosts.dropFirst() {
            let text = try String(contentsOfFile: "\(scratch.path)/\(host)/baton.toml", encoding: .utf8)
            #expect(text.contains("APP_VERSION = \"2\""), "\(host) untouched")
            #expect(try batons[host]!.status().reloads.count == 1, "\(host) not reloaded again")
            #expect(try Self.version(at: address, port: port) == "2")
        }
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 0)
        for (host, _) in Self.hosts { #expect(batons[host]!.stop() == 0, "\(host)") }
    }
}
