import BatonCore
import BatonLoad
import Foundation

/// `--soak N`: N reloads back to back under light load, with Baton's descriptors,
/// threads, resident memory and zombie children sampled every `every` reloads. What
/// leaks grows with the reloads; what does not stays flat.
struct Soak {
    struct Sample: Codable {
        var reloads: Int
        var descriptors: Int
        var threads: Int
        var residentKiB: Int
        var zombies: Int
        var failedReloads: Int
    }

    let products: String
    let workers: Int
    let reloads: Int
    let every: Int

    func run() throws -> (samples: [Sample], load: LoadReport) {
        let scratch = NSTemporaryDirectory() + "baton-bench-\(getpid())-soak"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let port = try LoadTarget.freeLoopbackPort()
        let server = try BatonServer(products: products, port: port, workers: workers, scratch: scratch)
        defer { _ = server.stop() }
        guard let pid = server.supervisorPID else { throw BenchError("no supervisor pid") }
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 2
        configuration.rate = 100
        let load = LoadGenerator(configuration)
        load.start()
        var samples = [try sample(pid, reloads: 0, failed: 0)]
        var failed = 0
        for reload in 1...reloads {
            if !server.reload() { failed += 1 }
            if reload % every == 0 || reload == reloads {
                // Sampled with nothing left to do: the replaced generation has drained.
                try server.settle()
                let sample = try sample(pid, reloads: reload, failed: failed)
                samples.append(sample)
                FileHandle.standardError.write(
                    Data(
                        "baton-bench: soak: \(reload) reloads: \(sample.descriptors) descriptors, \(sample.threads) threads, RSS \(sample.residentKiB) KiB, \(sample.zombies) zombies, \(failed) failed reloads\n"
                            .utf8))
            }
        }
        return (samples, load.stop())
    }

    private func sample(_ pid: Int32, reloads: Int, failed: Int) throws -> Sample {
        let usage = try ProcessUsage(pid: pid)
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count
        return Sample(
            reloads: reloads, descriptors: descriptors, threads: threads, residentKiB: usage.residentKiB,
            zombies: Self.zombieChildren(of: pid), failedReloads: failed)
    }

    /// Children of `parent` that exited and were not reaped.
    static func zombieChildren(of parent: Int32) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.count { entry in
            guard Int32(entry) != nil, let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && fields[0] == "Z" && Int32(fields[1]) == parent
        }
    }

    static func markdown(_ samples: [Sample], load: LoadReport, workers: Int) -> String {
        var text = "\(workers) workers of baton-demo, 2 clients at 100 requests/s, reloads back to back; "
        text += "\(load.requests) requests, \(load.totalFailures) failed.\n\n"
        text += "| reloads | descriptors | threads | RSS (MB) | zombies | failed reloads |\n|---|---|---|---|---|---|\n"
        for sample in samples {
            text +=
                "| \(sample.reloads) | \(sample.descriptors) | \(sample.threads) | "
                + String(format: "%.1f", Double(sample.residentKiB) / 1024) + " | \(sample.zombies) | \(sample.failedReloads) |\n"
        }
        return text
    }
}
