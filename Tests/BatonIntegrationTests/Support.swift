import BatonCore
import BatonLoad
import Foundation
import Testing

/// The executables of this package, built next to the test bundle.
enum Products {
    static let directory: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }()

    static func path(_ name: String) -> String {
        "\(directory)/\(name)"
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
func freePort() -> Int {
    (try? LoadTarget.freeLoopbackPort()) ?? 0
}

/// A configuration file for one `http` listener on 127.0.0.1 and `workers` workers.
func serviceConfiguration(port: Int, command: [String], workers: Int, readyTimeout: String = "30s") -> String {
    """
    [[listener]]
    name = "http"
    address = "tcp://127.0.0.1:\(port)"

    [workers]
    command = [\(command.map { "\"\($0)\"" }.joined(separator: ", "))]
    count = \(workers)
    ready_timeout = "\(readyTimeout)"
    drain_timeout = "5s"
    """
}

/// Baton serving one UDP listener named `listener` with `flows` (none given: the
/// listener's default), two workers of the Python `server`, from a configuration file in
/// `scratch`; it fails the test, saying that `tested` cannot be tested here, when
/// steering is off on this machine.
func batonOnUDP(
    _ flows: String?, listener: String, server: String, drainTimeout: String, in scratch: ScratchDirectory,
    tested: String = "flows"
) throws -> (BatonUnderTest, port: Int) {
    let port = freePort()
    try scratch.write(
        "baton.toml",
        """
        [[listener]]
        name = "\(listener)"
        address = "udp://127.0.0.1:\(port)"
        \(flows.map { "flows = \"\($0)\"" } ?? "")

        [workers]
        command = ["python3", "\(server)"]
        count = 2
        drain_timeout = "\(drainTimeout)"
        """)
    let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
    try baton.waitUntilServing()
    if baton.log.contains("steering is off") {
        throw TestFailure("steering is off on this machine, so \(tested) cannot be tested here: \(baton.log)")
    }
    return (baton, port)
}

/// A scratch directory for one test, removed when the test ends.
final class ScratchDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "baton-test-" + UUID().uuidString.prefix(8)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: "\(path)/\(name)", atomically: true, encoding: .utf8)
    }

    deinit {
        // BATON_TEST_KEEP=1 keeps logs and configurations for a post-mortem.
        if ProcessInfo.processInfo.environment["BATON_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A `baton` process started by a test, stopped by pid when the test ends.
final class BatonUnderTest {
    let process = Process()
    let controlSocket: String
    let logPath: String

    /// `arguments` are baton's, without `--control`; `environment` is added to the test's.
    /// A `launcher` (program and options) runs in front of baton and execs it. Baton's
    /// standard output goes to its log unless `output` is given.
    init(
        _ arguments: [String], in scratch: ScratchDirectory, environment: [String: String] = [:],
        launcher: [String] = [], executable: String = Products.path("baton"),
        controlSocket: String? = nil, output: Pipe? = nil
    ) throws {
        self.controlSocket = controlSocket ?? "\(scratch.path)/baton.sock"
        logPath = "\(scratch.path)/baton-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let command = launcher + [executable, "--control", self.controlSocket] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = output ?? log
        process.standardError = log
        process.currentDirectoryURL = URL(fileURLWithPath: scratch.path)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        try process.run()
    }

    var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    func status() throws -> StatusReport {
        let reply = try ControlClient.send(ControlRequest(command: .status), to: controlSocket)
        guard let status = reply.status else { throw TestFailure("no status: \(reply)") }
        return status
    }

    /// Waits (bounded) until generation `generation`, or any, serves with every worker ready.
    @discardableResult
    func waitUntilServing(generation: Int? = nil, timeout: Double = 60) throws -> StatusReport {
        let deadline = Date().addingTimeInterval(timeout)
        var last: String = "no answer"
        while Date() < deadline {
            guard process.isRunning else { throw TestFailure("baton exited (\(process.terminationStatus)):\n\(log)") }
            if let status = try? status() {
                if let serving = status.generations.last(where: { $0.role == .serving }),
                    generation == nil || serving.number == generation,
                    !serving.workers.isEmpty, serving.workers.allSatisfy({ $0.state == .ready }),
                    status.phase == .running
                {
                    return status
                }
                last = "\(status.phase), generations \(status.generations.map { "\($0.number):\($0.role)" })"
            }
            usleep(20_000)
        }
        throw TestFailure("baton did not serve within \(timeout)s (\(last)):\n\(log)")
    }

    /// Waits (bounded) for `condition` on the status.
    func waitForStatus(timeout: Double = 30, _ what: String, _ condition: (StatusReport) -> Bool) throws -> StatusReport {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status = try? status(), condition(status) { return status }
            usleep(20_000)
        }
        throw TestFailure("status never showed \(what):\n\(log)")
    }

    func reload() throws -> ControlReply {
        try ControlClient.send(ControlRequest(command: .reload, wait: true), to: controlSocket)
    }

    /// SIGTERM, then waits (bounded) for the exit; returns the exit status.
    @discardableResult
    func stop(timeout: Double = 30) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        return waitForExit(timeout: timeout)
    }

    func waitForExit(timeout: Double = 30) -> Int32 {
        BatonIntegrationTests.waitForExit(process, timeout: timeout)
    }

    deinit {
        if process.isRunning {
            // Workers are in their own process groups; take them down with baton.
            if let status = try? status() {
                for worker in status.generations.flatMap(\.workers) {
                    if let pid = worker.pid { kill(-pid, SIGKILL) }
                }
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Waits (bounded) for `process` to exit and returns its status; past `timeout`, kills it
/// and returns -1.
func waitForExit(_ process: Process, timeout: Double = 30) -> Int32 {
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline {
        usleep(20_000)
    }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return -1
    }
    return process.terminationStatus
}

/// What `curl -s` prints for `arguments` (10 s at most).
func curl(_ arguments: [String]) throws -> String {
    try run("/usr/bin/curl", ["-s", "--max-time", "10"] + arguments).output
}

/// Runs a command to completion; returns its exit status and output.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    let pipe = Pipe()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
