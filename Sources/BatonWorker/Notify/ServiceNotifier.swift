import BatonCore
import Glibc

/// Tells the supervisor about this worker by the sd_notify protocol: one datagram of
/// `KEY=value` lines to the unix socket in `NOTIFY_SOCKET` (a path, or `@name` for the
/// abstract namespace). Baton and systemd both read it. Without `NOTIFY_SOCKET`, every
/// message is dropped, so a worker can notify unconditionally.
public struct ServiceNotifier: Sendable {
    /// `NOTIFY_SOCKET`, or nil.
    public let socketPath: String?

    public init(socketPath: String?) {
        self.socketPath = socketPath.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The notifier of `NOTIFY_SOCKET` in `environment`.
    public init(environment: [String: String]) {
        self.init(socketPath: environment[WorkerContract.Systemd.notifySocket])
    }

    /// `READY=1`: the worker serves; Baton may now drain the previous generation.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        send(Self.message(["READY=1"], status: status))
    }

    /// `STATUS=…`, shown by `batonctl status` and `systemctl status`.
    @discardableResult
    public func status(_ status: String) -> Bool {
        send(Self.message([], status: status))
    }

    /// `STOPPING=1`: the worker has begun to drain.
    @discardableResult
    public func stopping(status: String? = nil) -> Bool {
        send(Self.message(["STOPPING=1"], status: status))
    }

    /// The datagram for `fields` and a status; newlines in the status become spaces, as
    /// the protocol is line-based.
    public static func message(_ fields: [String], status: String?) -> String {
        var lines = fields
        if let status {
            lines.append("STATUS=" + status.map { $0.isNewline ? " " : String($0) }.joined())
        }
        return lines.joined(separator: "\n")
    }

    /// Sends `message` as one datagram; false without `NOTIFY_SOCKET` or when it cannot
    /// be sent.
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let socketPath, var address = try? UnixAddress(socketPath, subject: socketPath) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(message.utf8)
        let sent = address.withSockaddr { address, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length) }
        }
        return sent == bytes.count
    }
}
