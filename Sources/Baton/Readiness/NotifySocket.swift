import CBatonShim
import Glibc

/// The datagram socket workers find in `NOTIFY_SOCKET` and speak the sd_notify
/// protocol on (`READY=1`, `STATUS=…`, `STOPPING=1`). Each datagram carries its
/// sender's pid, which the supervisor attributes to a worker.
final class NotifySocket: Sendable {
    /// The `NOTIFY_SOCKET` value: an abstract address, so nothing is left on disk.
    let address: String
    private let fd: Int32

    init() throws(SystemError) {
        address = "@baton/\(getpid())/notify"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket", subject: "notify socket") }
        var unixAddress = try UnixAddress(address, subject: "notify socket")
        guard unixAddress.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let error = SystemError.last("bind", subject: "notify socket \(address)")
            close(fd)
            throw error
        }
        let error = baton_enable_credentials(fd)
        guard error == 0 else { throw SystemError("setsockopt(SO_PASSCRED)", errno: error, subject: "notify socket") }
        // Bursts of notifications from many workers must not be dropped.
        var size: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Calls `deliver` with each message and its sender's pid, on a thread of its own.
    func start(_ deliver: @escaping @Sendable (pid_t, String) -> Void) {
        let fd = self.fd
        Thread.detach {
            var buffer = [CChar](repeating: 0, count: 4096)
            while true {
                var length = 0
                var pid: pid_t = 0
                let error = buffer.withUnsafeMutableBufferPointer {
                    baton_receive_with_credentials(fd, $0.baseAddress, $0.count, &length, &pid)
                }
                guard error == 0 else {
                    if error == EINTR { continue }
                    return
                }
                let text = buffer.withUnsafeBufferPointer {
                    String(decoding: UnsafeRawBufferPointer($0).prefix(length), as: UTF8.self)
                }
                deliver(pid, text)
            }
        }
    }
}

/// One sd_notify message, as far as Baton cares.
struct NotifyMessage: Equatable {
    var ready = false
    var stopping = false
    var status: String?

    init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line == "READY=1" {
                ready = true
            } else if line == "STOPPING=1" {
                stopping = true
            } else if line.hasPrefix("STATUS=") {
                status = String(line.dropFirst(7))
            }
        }
    }
}

/// Finds which of our processes a pid belongs to: itself, the leader of its process
/// group, or its nearest ancestor that we know. Reads `/proc`, so a sender that has
/// already been reaped by its parent cannot be attributed (systemd has the same limit
/// with `NotifyAccess=all`).
enum ProcessAncestry {
    static func attribute<Value>(_ pid: pid_t, in known: [pid_t: Value]) -> Value? {
        if let value = known[pid] { return value }
        var current = pid
        for _ in 0..<16 {
            guard let (parent, group) = parentAndGroup(current) else { return nil }
            if let value = known[group] ?? known[parent] { return value }
            guard parent > 1 else { return nil }
            current = parent
        }
        return nil
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
