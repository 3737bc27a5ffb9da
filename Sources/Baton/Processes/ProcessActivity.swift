import Glibc

/// Whether a process is busy, from `/proc`: where a leaving worker's connections cannot
/// be read (``UnansweredConnections``), and for datagram sockets, it gets its drain signal
/// only once it waits with nothing queued, so that a server whose shutdown drops what it
/// took has answered it by then, even when the machine is too busy to run it at once.
enum ProcessActivity {
    /// True when no thread of the process is running or runnable (`R` in
    /// `/proc/<pid>/task/<tid>/stat`); false also when that cannot be read.
    static func isWaiting(_ pid: pid_t) -> Bool {
        guard let directory = opendir("/proc/\(pid)/task") else { return false }
        defer { closedir(directory) }
        var threads = 0
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            guard let thread = pid_t(name) else { continue }
            // The state follows the command name, which is in parentheses and may hold anything.
            guard let text = try? FileContents.read("/proc/\(pid)/task/\(thread)/stat"),
                let close = text.lastIndex(of: ")")
            else { return false }
            let state = text[text.index(after: close)...].drop { $0 == " " }.first
            if state == "R" { return false }
            threads += 1
        }
        return threads > 0
    }
}
