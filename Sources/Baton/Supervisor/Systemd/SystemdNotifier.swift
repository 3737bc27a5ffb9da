import CBatonShim
import CSystemd
// Glibc before CSystemd: <systemd/sd-daemon.h> pulls in <sys/socket.h>, and imported
// first it would own the socket constants (SOCK_STREAM, …) in this compiler job, where
// files that import only Glibc could then not find them.
import Glibc

/// Baton's own notifications to systemd when it runs as a `Type=notify` service.
/// Without `NOTIFY_SOCKET` every call does nothing.
struct SystemdNotifier {
    let enabled: Bool

    init() {
        enabled = getenv(WorkerContract.Systemd.notifySocket) != nil
    }

    /// Half the interval of the service's watchdog (`WATCHDOG_USEC`, for this process
    /// when `WATCHDOG_PID` is set): how often to send `WATCHDOG=1`. Nil without one.
    var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard enabled, sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds / 2))
    }

    /// Sends without ever waiting: a receiver that does not read (its queue full) loses
    /// the message, and the event loop that sends it never blocks (sd_notify(3) would).
    func send(_ fields: String) {
        notify(fields, with: -1)
    }

    private func notify(_ fields: String, with fd: Int32) {
        guard enabled, let path = getenv(WorkerContract.Systemd.notifySocket) else { return }
        _ = baton_notify(path, fields, fd)
    }

    /// Keeps a copy of a listening socket in the service's fd store, which systemd passes
    /// back on the next start of the service. Without `FileDescriptorStoreMax=` in the
    /// unit systemd drops it.
    func store(_ fd: Int32, name: String) {
        notify("FDSTORE=1\nFDNAME=\(name)", with: fd)
    }

    /// Drops every socket stored under `name`.
    func removeFromStore(name: String) {
        send("FDSTOREREMOVE=1\nFDNAME=\(name)")
    }

    /// `RELOADING=1` with the timestamp `Type=notify-reload` expects.
    func reloading(_ status: String) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)\nSTATUS=\(status)")
    }
}
