import Glibc

/// Sends one request to a running Baton and reads its answer, line by line.
public enum ControlClient {
    /// How long a client waits for each line of the answer, unless told otherwise: long
    /// for a request that lasts as long as a reload (`reload` or `scale` with `wait`,
    /// which can take `ready_timeout` plus the drain), short for the others.
    public static func defaultTimeout(for request: ControlRequest) -> Duration {
        request.wait == true ? .seconds(900) : .seconds(30)
    }

    /// Why connecting to the socket at `path` was not permitted, and whom to ask.
    static func permissionDenied(_ path: String) -> String {
        var info = stat()
        let me = "uid \(geteuid())\(userName(geteuid()).map { " (\($0))" } ?? "")"
        guard stat(path, &info) == 0 else {
            let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
            return
                "permission denied: \(me) cannot reach the socket through its directory \(directory.isEmpty ? "/" : directory); ask the administrator for access to that directory"
        }
        let owner = userName(info.st_uid) ?? "uid \(info.st_uid)"
        let group = groupName(info.st_gid) ?? "gid \(info.st_gid)"
        let mode = "0" + String(info.st_mode & 0o777, radix: 8)
        let whom = info.st_uid == 0 ? "root" : "\(owner) or root"
        let advice =
            info.st_mode & 0o060 == 0o060
            ? "ask to be added to group \(group) (Baton's control_group) or to a group the socket's ACL admits (getfacl \(path); Baton's control_readonly_group, for status only), or run batonctl as \(whom)"
            : "only \(whom == "root" ? "root" : "\(owner) and root") may use it; ask for Baton's control_group (reload, scale, status) or control_readonly_group (status) to include you, or run batonctl as \(whom)"
        return "permission denied: the socket is owned by \(owner), group \(group), mode \(mode), and \(me) may not connect; \(advice)"
    }

    private static func userName(_ uid: uid_t) -> String? {
        var entry = passwd()
        var buffer = [CChar](repeating: 0, count: 16384)
        var found: UnsafeMutablePointer<passwd>?
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, found != nil else { return nil }
        return String(cString: entry.pw_name)
    }

    private static func groupName(_ gid: gid_t) -> String? {
        var entry = group()
        var buffer = [CChar](repeating: 0, count: 65536)
        var found: UnsafeMutablePointer<group>?
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &found) == 0, found != nil else { return nil }
        return String(cString: entry.gr_name)
    }

    /// Calls `onReply` for every reply until the final one, which it returns.
    ///
    /// - Parameter timeout: how long to wait to connect, to send, and for each line of
    ///   the answer; ``defaultTimeout(for:)`` when nil.
    /// - Throws: ``ControlClientError`` naming the socket path, when no Baton answers
    ///   there, a system call fails, the answer ends or is unreadable, or Baton does not
    ///   answer within `timeout`.
    public static func send(
        _ request: ControlRequest, to path: String, timeout: Duration? = nil, onReply: (ControlReply) -> Void = { _ in }
    ) throws(ControlClientError) -> ControlReply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlClientError(path: path, .last("socket")) }
        defer { close(fd) }
        let timeout = timeout ?? defaultTimeout(for: request)
        var limit = timeval(
            tv_sec: Int(timeout.components.seconds),
            tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            guard setsockopt(fd, SOL_SOCKET, option, &limit, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw ControlClientError(path: path, .last("setsockopt"))
            }
        }
        let stalled = ControlClientError(
            path: path, reason: "Baton did not answer within \(timeout) (stalled, or busy longer than that: see batonctl --timeout)", .timedOut)
        var address: UnixAddress
        do {
            address = try UnixAddress(path, subject: path)
        } catch {
            throw ControlClientError(path: path, SystemError("connect", errno: error.errno))
        }
        guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let failure = SystemError.last("connect")
            if failure.errno == EAGAIN { throw stalled }
            if failure.errno == EACCES { throw ControlClientError(path: path, reason: permissionDenied(path), .permissionDenied) }
            let nobody = failure.errno == ENOENT || failure.errno == ECONNREFUSED
            throw ControlClientError(path: path, reason: nobody ? "no Baton is running there (\(failure))" : "\(failure)")
        }
        let line = Array(request.encodedLine().utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            if errno == EAGAIN { throw stalled }
            throw ControlClientError(path: path, .last("write"))
        }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw stalled }
                throw ControlClientError(path: path, .last("read"), .brokenAnswer)
            }
            guard count > 0 else {
                throw ControlClientError(path: path, reason: "Baton closed the connection without a final answer", .brokenAnswer)
            }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let text = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                guard let reply = ControlReply.decode(text) else {
                    throw ControlClientError(path: path, reason: "unreadable answer: \(text)", .brokenAnswer)
                }
                onReply(reply)
                if reply.final { return reply }
            }
        }
    }
}
