import BatonCore
import Glibc

extension ProcessMetrics {
    /// This process's, read from /proc at each scrape (a few small reads on the event
    /// loop; nothing is kept between scrapes).
    static func ofThisProcess() -> ProcessMetrics {
        var metrics = ProcessMetrics(version: BatonVersion.current)
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        // The fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3 of proc(5), so field N is at index N - 3.
        if let stat = try? FileContents.read("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
            if let user = field(14), let system = field(15), ticks > 0 { metrics.cpuSeconds = (user + system) / ticks }
            metrics.virtualBytes = field(23)
            metrics.residentBytes = field(24).map { $0 * pageSize }
            if let started = field(22), ticks > 0, let boot = bootTime() { metrics.startTime = boot + started / ticks }
        }
        metrics.openDescriptors = openDescriptors()
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            metrics.maximumDescriptors = Int(limit.rlim_cur)
        }
        return metrics
    }

    /// When the machine booted, in seconds since the Unix epoch (`btime` of /proc/stat).
    private static func bootTime() -> Double? {
        guard let stat = try? FileContents.read("/proc/stat") else { return nil }
        return stat.split(separator: "\n").first { $0.hasPrefix("btime ") }.flatMap { Double($0.dropFirst(6)) }
    }

    /// The entries of /proc/self/fd, less the one that reads them.
    private static func openDescriptors() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var count = 0
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            if let fd = Int32(name), fd != own { count += 1 }
        }
        return count
    }
}
