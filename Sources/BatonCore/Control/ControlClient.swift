import Glibc

/// Sends one request to a running Baton and reads its answer, line by line.
public enum ControlClient {
    /// How long a client waits for each line of the answer, unless told otherwise: long
    /// for a request that lasts as long as a reload (`reload` or `scale` with `wait`,
    /// which can take `ready_timeout` plus the drain), short for the others.
    public static func defaultTimeout(for request: ControlRequest) -> Duration {
        request.wait == true ? .seconds(900) : .seconds(30)
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
        var limit = timeval(tv_sec: Int(timeout.components.seconds),
                            tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            guard setsockopt(fd, SOL_SOCKET, option, &limit, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw ControlClientError(path: path, .last("setsockopt"))
            }
        }
        let stalled = ControlClientError(
            path: path, reason: "Baton did not answer within \(timeout) (stalled, or busy longer than that: see batonctl --timeout)")
        var address: UnixAddress
        do {
            address = try UnixAddress(path, subject: path)
        } catch {
            throw ControlClientError(path: path, SystemError("connect", errno: error.errno))
        }
        guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let failure = SystemError.last("connect")
            if failure.errno == EAGAIN { throw stalled }
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
                throw ControlClientError(path: path, .last("read"))
            }
            guard count > 0 else {
                throw ControlClientError(path: path, reason: "Baton closed the connection without a final answer")
            }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let text = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                guard let reply = ControlReply.decode(text) else {
                    throw ControlClientError(path: path, reason: "unreadable answer: \(text)")
                }
                onReply(reply)
                if reply.final { return reply }
            }
        }
    }
}
