import BatonLoad
import Foundation

/// Another tool's reload: HAProxy in master-worker mode and nginx, run from a
/// configuration template in `Docs/bench/` with `@PORT@` and `@DIR@` filled in, each
/// answering every request itself with its worker's pid in `X-Pid`; and Server::Starter
/// (`start_server`), which holds the socket and runs one `baton-demo` on it.
final class SelfReloadingServer: ServerUnderTest {
    enum Kind {
        case haproxy, nginx, serverStarter

        var executable: String {
            switch self {
            case .haproxy: "haproxy"
            case .nginx: "nginx"
            case .serverStarter: "start_server"
            }
        }

        /// The configuration template in `Docs/bench/`, if it has one.
        var template: String? {
            switch self {
            case .haproxy: "haproxy.cfg"
            case .nginx: "nginx.conf"
            case .serverStarter: nil
            }
        }

        var reloadSignal: Int32 { self == .haproxy ? SIGUSR2 : SIGHUP }

        /// Worker processes once a reload is over.
        var workers: Int {
            switch self {
            case .haproxy, .serverStarter: 1
            case .nginx: 2
            }
        }
    }

    private let kind: Kind
    private let master: ServerProcess
    /// How many times the master has said "Loading success" (HAProxy).
    private let loadings = Counter()
    private let target: LoadTarget

    /// The path of `kind`'s executable, or nil when it is not installed.
    static func installed(_ kind: Kind) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return (path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"])
            .map { "\($0)/\(kind.executable)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init(_ kind: Kind, executable: String, configurations: String, products: String, port: Int, scratch: String) throws {
        self.kind = kind
        target = .tcp(host: "127.0.0.1", port: port)
        var configuration = ""
        if let name = kind.template {
            let template = try String(contentsOfFile: "\(configurations)/\(name)", encoding: .utf8)
            configuration = "\(scratch)/\(name)"
            try template.replacingOccurrences(of: "@PORT@", with: "\(port)")
                .replacingOccurrences(of: "@DIR@", with: scratch)
                .write(toFile: configuration, atomically: true, encoding: .utf8)
        }
        let arguments =
            switch kind {
            case .haproxy: ["-W", "-db", "-f", configuration]
            case .nginx: ["-c", configuration, "-p", scratch]
            // The old worker gets SIGTERM once the new one has run for --interval seconds.
            case .serverStarter: ["--port=127.0.0.1:\(port)", "--interval=1", "--", "\(products)/baton-demo"]
            }
        let errors = Pipe()
        master = try ServerProcess([executable] + arguments, stderr: errors.fileHandleForWriting.fileDescriptor)
        // The master holds the writing end now: the pipe ends when it exits.
        try errors.fileHandleForWriting.close()
        let loadings = self.loadings
        Thread.detachNewThread {
            // Until the master exits and the pipe ends.
            while case let data = errors.fileHandleForReading.availableData, !data.isEmpty {
                let text = String(decoding: data, as: UTF8.self)
                loadings.add(text.components(separatedBy: "Loading success").count - 1)
            }
        }
        guard waitUntil({ (kind != .haproxy || loadings.count > 0) && target.responder() != nil }) else {
            throw BenchError("\(kind.executable) did not answer on port \(port) within 10 s")
        }
    }

    var supervisorPID: Int32? { master.processIdentifier }

    /// Signals the master, then waits until a worker that is not one of the previous
    /// ones answers.
    func reload() -> Bool {
        let previous = Set(workers())
        let loadedBefore = loadings.count
        kill(master.processIdentifier, kind.reloadSignal)
        return waitUntil {
            // HAProxy's master re-executes itself on a reload and loses a SIGUSR2 that
            // arrives before it says "Loading success": wait for that line as well.
            guard kind != .haproxy || loadings.count > loadedBefore,
                let responder = target.responder(), let pid = Int32(responder)
            else { return false }
            return !previous.contains(pid)
        }
    }

    /// Waits until the old workers have gone.
    func settle() throws {
        _ = waitUntil { workers().count <= kind.workers }
    }

    func stop() -> Int32? {
        kill(master.processIdentifier, SIGTERM)
        master.waitUntilExit()
        return master.terminationStatus
    }

    /// The master's children.
    private func workers() -> [Int32] {
        let pid = master.processIdentifier
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0) }
    }

    private func waitUntil(_ condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            usleep(1000)
        }
        return false
    }
}
