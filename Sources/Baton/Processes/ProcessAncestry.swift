import Glibc

/// Whether a process belongs to a worker's process tree, from `/proc`.
enum ProcessAncestry {
    /// True for the worker itself, a member of its process group, or a live descendant.
    /// A sender that has already exited cannot be checked, and is believed only when
    /// `trustingExited`: when the socket is one no other user can reach. A pid of 0
    /// (no credentials) belongs to no one.
    static func belongs(_ pid: pid_t, to worker: pid_t, trustingExited: Bool) -> Bool {
        guard pid > 0 else { return false }
        var current = pid
        for _ in 0..<32 {
            if current == worker { return true }
            guard let (parent, group) = parentAndGroup(current) else { return current == pid && trustingExited }
            if group == worker { return true }
            guard parent > 1 else { return false }
            current = parent
        }
        return false
    }

    /// Fields 4 and 5 of `/proc/<pid>/stat`, after the command name in parentheses.
    private static func parentAndGroup(_ pid: pid_t) -> (pid_t, pid_t)? {
        guard let text = try? FileContents.read("/proc/\(pid)/stat"),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let parent = pid_t(fields[1]), let group = pid_t(fields[2]) else { return nil }
        return (parent, group)
    }
}
