import CBatonShim
import Glibc

/// The datagram socket one worker finds in `NOTIFY_SOCKET` and speaks the sd_notify
/// protocol on (`READY=1`, `STATUS=…`, `STOPPING=1`).
///
/// Each worker gets a socket of its own, in Baton's private ``NotifyDirectory``, so a
/// message is attributed to its worker even when its sender is a short-lived child
/// that is gone by the time it is read (as `systemd-notify --ready` in a shell wrapper
/// is): no other user can reach the socket. The sender's credentials are checked as
/// well (``ProcessAncestry``): a live sender outside the worker's process tree, or a
/// datagram without credentials, is dropped.
final class NotifySocket {
    /// The `NOTIFY_SOCKET` value: a path in the private directory, or (for workers
    /// adopted from a Baton older than the directory) an abstract address.
    let address: String
    /// Whether only Baton's user can reach the socket, so that a sender that has
    /// already exited can be believed.
    let isPrivate: Bool
    private let fd: Int32

    /// Starts delivering each message with its sender's pid. A worker that runs as
    /// another user, `owner`, gets the socket file (mode 0600) so that it can send;
    /// then a sender that has exited is no longer believed, since any process of that
    /// user can reach the socket too.
    init(
        address: String, owner: (uid: uid_t, gid: gid_t)? = nil,
        deliver: @escaping @Sendable (pid_t, String) -> Void
    ) throws(SystemError) {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket", subject: "notify socket \(address)") }
        var unixAddress = try UnixAddress(address, subject: "notify socket")
        let inDirectory = !address.hasPrefix("@")
        if inDirectory {
            // Left by the Baton this process was before an upgrade in place.
            unlink(address)
        }
        guard unixAddress.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let error = SystemError.last("bind", subject: "notify socket \(address)")
            Glibc.close(fd)
            throw error
        }
        if inDirectory, let owner, owner.uid != geteuid() {
            // The mode first: once the file is the worker's, changing it would need CAP_FOWNER.
            for (call, result) in [("chmod", { chmod(address, 0o600) }), ("chown", { chown(address, owner.uid, owner.gid) })] {
                guard result() == 0 else {
                    let error = SystemError.last(call, subject: "notify socket \(address) for uid \(owner.uid)")
                    Glibc.close(fd)
                    throw error
                }
            }
            isPrivate = false
        } else {
            isPrivate = inDirectory
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
        if !address.hasPrefix("@") { unlink(address) }
    }
}
