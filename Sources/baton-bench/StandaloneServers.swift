import BatonCore
import Foundation

/// `baton-demo` processes started by the benchmark itself, without Baton: each binds its
/// own `SO_REUSEPORT` socket (`--listen --reuseport`). Readiness is read from a notify
/// socket of the benchmark's, as Baton would.
final class StandaloneServers {
    let executable: String
    let port: Int
    let extraArguments: [String]
    private(set) var serving: [ServerProcess] = []
    private var retired: [ServerProcess] = []

    init(executable: String, port: Int, extraArguments: [String] = []) {
        self.executable = executable
        self.port = port
        self.extraArguments = extraArguments
    }

    /// Starts `count` processes at once and returns when every one has sent `READY=1`.
    func start(count: Int) throws -> [ServerProcess] {
        let started = try (0..<count).map { _ in try spawn() }
        defer { started.forEach { $0.notify.close() } }
        for (process, notify) in started where !notify.waitForReady(timeout: 30) {
            started.forEach { kill($0.process.processIdentifier, SIGTERM) }
            throw BenchError("baton-demo (pid \(process.processIdentifier)) was not ready within 30 s")
        }
        return started.map(\.process)
    }

    private func spawn() throws -> (process: ServerProcess, notify: NotifyListener) {
        let notify = try NotifyListener()
        var environment = ProcessInfo.processInfo.environment
        environment[WorkerContract.Systemd.notifySocket] = notify.address
        do {
            let process = try ServerProcess(
                [executable, "--listen", "127.0.0.1:\(port)", "--reuseport"] + extraArguments, environment: environment)
            return (process, notify)
        } catch {
            notify.close()
            throw error
        }
    }

    /// The naive reload: the new processes bind their own sockets beside the old ones,
    /// then the old ones are told to drain, which closes their sockets.
    func replace(waitForExit: Bool) throws {
        let old = serving
        if waitForExit {
            // Stop, then start: nothing listens in between.
            terminate(old, wait: true)
            serving = try start(count: old.count)
        } else {
            serving = try start(count: old.count)
            terminate(old, wait: false)
        }
    }

    func launch(count: Int) throws {
        serving = try start(count: count)
    }

    func stopAll() {
        terminate(serving, wait: true)
        for process in retired where process.isRunning {
            process.waitUntilExit()
        }
        serving = []
        retired = []
    }

    private func terminate(_ processes: [ServerProcess], wait: Bool) {
        for process in processes where process.isRunning {
            kill(process.processIdentifier, SIGTERM)
        }
        if wait {
            processes.forEach { $0.waitUntilExit() }
        } else {
            retired.removeAll { !$0.isRunning }
            retired += processes
        }
    }
}

/// A datagram socket in the abstract namespace that reads the sd_notify protocol.
final class NotifyListener {
    let address: String
    private let fd: Int32
    private static let counter = Counter()

    init() throws {
        address = "@baton-bench/\(getpid())/\(Self.counter.next())"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket(AF_UNIX): errno \(errno)") }
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        let name = Array(address.utf8.dropFirst())
        let length = withUnsafeMutableBytes(of: &storage.sun_path) { path -> Int in
            path[0] = 0
            for (index, byte) in name.enumerated() { path[index + 1] = byte }
            return MemoryLayout<sa_family_t>.size + 1 + name.count
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard bound == 0 else {
            Glibc.close(fd)
            throw BenchError("bind(\(address)): errno \(errno)")
        }
    }

    /// True once a message with `READY=1` arrived within `timeout` seconds.
    func waitForReady(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000))) > 0 else { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0, String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n").contains("READY=1") {
                return true
            }
        }
        return false
    }

    func close() {
        Glibc.close(fd)
    }

}

/// A count shared between threads.
final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()

    var count: Int { lock.withLock { value } }

    func add(_ amount: Int) {
        lock.withLock { value += amount }
    }

    /// Adds one; returns the new count.
    func next() -> Int {
        lock.withLock {
            value += 1
            return value
        }
    }
}
