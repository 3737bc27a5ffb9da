import BatonCore
import BatonLoad
import Foundation

/// `--drain-timing`: how long Baton keeps a replaced generation, idle and under a
/// keep-alive load that saturates the machine (wrk), which a worker busy with keep-alive
/// clients must not stretch (issue 23).
struct DrainTiming {
    static let wrk = "/usr/bin/wrk"

    let products: String
    /// Seconds of reloads asked every `reloadEvery` milliseconds.
    let seconds: Double
    let reloadEvery: Int
    /// wrk's connections (over two threads).
    let connections: Int

    struct Figures: Codable {
        /// From `reload --wait` returning to the replaced generation gone, 4 workers.
        var goneAfterReload: ScenarioResult.Percentiles?
        /// A rolling reload, a slot at a time, by number of workers.
        var rolling: [Int: Double] = [:]
        var reloadsAsked = 0
        var reloadsCompleted = 0
        var wrkRequests: String?
    }

    func run() throws -> (idle: Figures, busy: Figures) {
        guard FileManager.default.isExecutableFile(atPath: Self.wrk) else {
            throw BenchError("\(Self.wrk) is not installed (apt-get install wrk)")
        }
        return (try figures(busy: false), try figures(busy: true))
    }

    private func figures(busy: Bool) throws -> Figures {
        var figures = Figures()
        try withBaton(workers: 4, busy: busy) { server, load in
            var gone: [Double] = []
            for _ in 0..<5 {
                guard server.reload() else { throw BenchError("a reload failed") }
                let returned = ContinuousClock.now
                try waitForOneGeneration(server)
                gone.append((ContinuousClock.now - returned).milliseconds)
            }
            figures.goneAfterReload = ScenarioResult.Percentiles(gone)
            // A reload asked every `reloadEvery` ms, each waited for: one that takes longer
            // makes the next ones wait.
            let interval = Duration.milliseconds(reloadEvery)
            let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
            figures.reloadsAsked = Int(seconds * 1000) / reloadEvery
            var next = ContinuousClock.now
            while next < end {
                sleep(until: next)
                if server.reload() { figures.reloadsCompleted += 1 }
                next = max(next + interval, .now)
            }
            figures.wrkRequests = load.map(Self.stop)
        }
        for workers in [4, 16] {
            try withBaton(workers: workers, busy: busy) { server, load in
                let started = ContinuousClock.now
                let reply = try? ControlClient.send(
                    ControlRequest(command: .reload, wait: true, strategy: "rolling", batch: 1), to: server.controlSocket)
                guard reply?.ok == true else { throw BenchError("a rolling reload of \(workers) workers failed: \(String(describing: reply))") }
                figures.rolling[workers] = (ContinuousClock.now - started).seconds
                if let load { _ = Self.stop(load) }
            }
        }
        return figures
    }

    private func withBaton(workers: Int, busy: Bool, _ body: (BatonServer, Process?) throws -> Void) throws {
        let scratch = NSTemporaryDirectory() + "baton-bench-\(getpid())-drain-\(workers)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let port = try LoadTarget.freeLoopbackPort()
        let server = try BatonServer(products: products, port: port, workers: workers, scratch: scratch)
        defer { _ = server.stop() }
        var load: Process?
        if busy {
            let wrk = Process()
            wrk.executableURL = URL(fileURLWithPath: Self.wrk)
            wrk.arguments = ["-t", "2", "-c", "\(connections)", "-d", "3600s", "http://127.0.0.1:\(port)/"]
            wrk.standardOutput = Pipe()
            wrk.standardError = FileHandle.nullDevice
            try wrk.run()
            load = wrk
            // Until its connections are open and busy.
            sleep(until: .now + .seconds(1))
        }
        defer { if let load, load.isRunning { kill(load.processIdentifier, SIGKILL) } }
        try body(server, load)
    }

    private func waitForOneGeneration(_ server: BatonServer) throws {
        for _ in 0..<60_000 {
            if let status = try? ControlClient.send(ControlRequest(command: .status), to: server.controlSocket).status,
                status.generations.count == 1
            {
                return
            }
            usleep(1000)
        }
        throw BenchError("the replaced generation was still there after a minute")
    }

    /// Stops wrk (SIGINT makes it print its summary) and returns its request and error lines.
    private static func stop(_ wrk: Process) -> String {
        kill(wrk.processIdentifier, SIGINT)
        wrk.waitUntilExit()
        let output = (wrk.standardOutput as? Pipe)?.fileHandleForReading.readDataToEndOfFile() ?? Data()
        return String(decoding: output, as: UTF8.self).split(separator: "\n")
            .filter { $0.contains("requests in") || $0.contains("Socket errors") || $0.contains("Non-2xx") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
    }

    static func markdown(idle: Figures, busy: Figures, seconds: Double, reloadEvery: Int, connections: Int) -> String {
        func time(_ percentiles: ScenarioResult.Percentiles?) -> String {
            percentiles.map { String(format: "%.0f / %.0f", $0.p50, $0.max) } ?? "–"
        }
        func ratio(_ busy: Double?, _ idle: Double?) -> String {
            guard let busy, let idle, idle > 0 else { return "–" }
            return String(format: "%.2f×", busy / idle)
        }
        let rows = [
            "| replaced generation gone after `reload --wait` returned, p50 / max of 5 (ms), 4 workers | \(time(idle.goneAfterReload)) | \(time(busy.goneAfterReload)) | \(ratio(busy.goneAfterReload?.p50, idle.goneAfterReload?.p50)) |",
            "| rolling reload, batch 1, 4 workers (s) | \(idle.rolling[4].map { String(format: "%.2f", $0) } ?? "–") | \(busy.rolling[4].map { String(format: "%.2f", $0) } ?? "–") | \(ratio(busy.rolling[4], idle.rolling[4])) |",
            "| rolling reload, batch 1, 16 workers (s) | \(idle.rolling[16].map { String(format: "%.2f", $0) } ?? "–") | \(busy.rolling[16].map { String(format: "%.2f", $0) } ?? "–") | \(ratio(busy.rolling[16], idle.rolling[16])) |",
            "| reloads completed / asked (one every \(reloadEvery) ms for \(Int(seconds)) s, 4 workers) | \(idle.reloadsCompleted) / \(idle.reloadsAsked) | \(busy.reloadsCompleted) / \(busy.reloadsAsked) | \(ratio(Double(busy.reloadsCompleted), Double(busy.reloadsAsked))) of asked |",
        ]
        return """
            | | idle | busy (wrk, \(connections) keep-alive connections) | busy / idle |
            |---|---|---|---|
            \(rows.joined(separator: "\n"))

            wrk during the reloads asked every \(reloadEvery) ms: \(busy.wrkRequests ?? "–")
            """
    }
}
