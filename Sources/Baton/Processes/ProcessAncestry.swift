import Glibc

/// Whether a process belongs to a worker's process tree, from `/proc`.
///
/// Each worker leads a session of its own (``ProcessSpawner``), so the tree is what no
/// process can join from outside: a member of the worker's session, or a process whose
/// chain of parents reaches the worker. A process group is no proof: any process of
/// the same session could `setpgid` into a worker's group while every worker shared
/// Baton's session, and a worker could make another generation "ready".
enum ProcessAncestry {
    /// True for the worker itself, a member of its session, or a live descendant (one
    /// that left the session with `setsid`, as a daemonizing server does, counts while
    /// its parents are alive). A sender that has already exited cannot be checked, and
    /// is believed only when `trustingExited`: when the socket is one no other user can
    /// reach. A pid of 0 (no credentials) belongs to no one.
    static func belongs(_ pid: pid_t, to worker: pid_t, trustingExited: Bool) -> Bool {
        guard pid > 0 else { return false }
        var current = pid
        for _ in 0..<32 {
            if current == worker { return true }
            guard let (parent, session) = parentAndSession(current) else { return current == pid && trustingExited }
            // The worker leads its session, and a session id is not reused while it
            // has members: a worker adopted from an older Baton shares Baton's session,
            // whose id is not the worker's pid, and is found by its parents alone.
            if session == worker { return true }
            guard parent > 1 else { return false }
            current = parent
        }
        return false
    }

    /// Fields 4 and 6 of `/proc/<pid>/stat` (parent and session), after the command
    /// name in parentheses.
    private static func parentAndSession(_ pid: pid_t) -> (pid_t, pid_t)? {
        guard let text = try? FileContents.read("/proc/\(pid)/stat"),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 3, let parent = pid_t(fields[1]), let session = pid_t(fields[3]) else { return nil }
        return (parent, session)
    }
}
