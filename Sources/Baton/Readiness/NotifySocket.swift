import CBatonShim
import Glibc

/// The datagram socket one worker finds in `NOTIFY_SOCKET` and speaks the sd_notify
/// protocol on (`READY=1`, `STATUS=…`, `STOPPING=1`).
///
/// Each worker gets a socket of its own, so a message is attributed to its worker even
/// when its sender is a short-lived child that is gone by the time it is read (as
/// `systemd-notify --ready` in a shell wrapper is). The sender's credentials are
/// checked as well: a live sender outside the worker's process tree is ignored.
final class NotifySocket {
    /// The `NOTIFY_SOCKET` value: an abstract address, so nothing is left on disk.
    let address: String
    private let fd: Int32

    /// Starts delivering each message with its sender's pid.
    init(address: String, deliver: @escaping @Sendable (pid_t, String) -> Void) throws(SystemError) {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket", subject: "notify socket \(address)") }
        var unixAddress = try UnixAddress(address, subject: "notify socket")
        guard unixAddress.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let error = SystemError.last("bind", subject: "notify socket \(address)")
            Glibc.close(fd)
            throw error
        }
        let error = baton_enable_credentials(fd)
        guard error == 0 else {
            Glibc.close(fd)
            throw SystemError("setsockopt(SO_PASSCRED)", errno: error, subject: "notify socket \(address)")
        }
        self.address = address
        self.fd = fd
        try DescriptorWatcher.shared.watch(fd, subject: "notify socket \(address)") { fd in
            var buffer = [CChar](repeating: 0, count: 4096)
            while true {
                var length = 0
                var pid: pid_t = 0
                let error = buffer.withUnsafeMutableBufferPointer {
                    baton_receive_with_credentials(fd, $0.baseAddress, $0.count, &length, &pid)
                }
                guard error == 0 else { return true }
                let text = buffer.withUnsafeBufferPointer {
                    String(decoding: UnsafeRawBufferPointer($0).prefix(length), as: UTF8.self)
                }
                deliver(pid, text)
            }
        }
    }

    func close() {
        DescriptorWatcher.shared.close(fd)
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

/// Whether a process belongs to a worker's process tree, from `/proc`.
enum ProcessAncestry {
    /// True for the worker itself, a member of its process group, or a descendant. A
    /// sender that has already exited cannot be checked and is believed: only the
    /// worker's tree was given the socket's address.
    static func belongs(_ pid: pid_t, to worker: pid_t) -> Bool {
        var current = pid
        for _ in 0..<32 {
            if current == worker { return true }
            guard let (parent, group) = parentAndGroup(current) else { return current == pid }
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
