import Foundation

/// CPU time and memory of a running process, read from `/proc/<pid>`.
struct ProcessUsage: Codable, Sendable {
    /// User plus system CPU time, in seconds.
    var cpuSeconds: Double
    /// Peak resident set size (`VmHWM`), in KiB.
    var peakResidentKiB: Int
    /// Current resident set size (`VmRSS`), in KiB.
    var residentKiB: Int
    /// Context switches of each live thread so far, by thread id: each is a thread
    /// going to sleep or being preempted, so an idle process that polls shows them grow.
    var contextSwitches: [Int: Int]

    init(pid: Int32) throws {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name, which is in parentheses and may hold spaces.
        guard let close = stat.lastIndex(of: ")") else { throw BenchError("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15 of stat, so 11 and 12 after the name.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw BenchError("unreadable /proc/\(pid)/stat")
        }
        cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func kibibytes(_ key: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(key + ":") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        peakResidentKiB = kibibytes("VmHWM")
        residentKiB = kibibytes("VmRSS")
        contextSwitches = [:]
        for thread in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
            guard let id = Int(thread),
                let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(thread)/status", encoding: .utf8)
            else { continue }
            for line in text.split(separator: "\n") where line.contains("ctxt_switches:") {
                contextSwitches[id, default: 0] += Int(line.split(separator: "\t").last ?? "") ?? 0
            }
        }
    }

    /// Context switches since `earlier`, of the threads alive now.
    func contextSwitches(since earlier: ProcessUsage) -> Int {
        contextSwitches.reduce(0) { $0 + $1.value - (earlier.contextSwitches[$1.key] ?? 0) }
    }
}
