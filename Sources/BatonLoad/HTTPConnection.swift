import Glibc

/// One client connection with blocking I/O and timeouts, and just enough HTTP/1.1 to
/// tell a complete `200` from everything else.
struct HTTPConnection {
    let fd: Int32
    /// Responses already read on this connection.
    var answered = 0

    enum Failure: Error, Equatable {
        case refused, reset, timedOut, closed, short
        case wrong(String)
        case other(String)
    }

    struct Response {
        var status: Int
        var closes: Bool
        var responder: String?
        /// `X-Generation` and `X-Slot`, where the server names them.
        var generation: String?
        var slot: String?
    }

    static func connect(_ target: LoadTarget, timeout: Duration) throws(Failure) -> HTTPConnection {
        let fd: Int32
        var result: Int32
        switch target {
        case .tcp(let host, let port):
            let family = host.contains(":") ? AF_INET6 : AF_INET
            fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw .other("socket: \(errno)") }
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, 4)
            if family == AF_INET6 {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = UInt16(port).bigEndian
                inet_pton(AF_INET6, host, &address.sin6_addr)
                result = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
                }
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = UInt16(port).bigEndian
                inet_pton(AF_INET, host, &address.sin_addr)
                result = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw .other("socket: \(errno)") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8.prefix(107))) }
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        if result != 0 {
            let error = errno
            guard error == EINPROGRESS || error == EAGAIN else {
                Glibc.close(fd)
                throw classify(error)
            }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&poller, 1, milliseconds(timeout)) == 1 else {
                Glibc.close(fd)
                throw .timedOut
            }
            var socketError: Int32 = 0
            var length = socklen_t(4)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length)
            if socketError != 0 {
                Glibc.close(fd)
                throw classify(socketError)
            }
        }
        // Blocking from here on, with timeouts on every read and write.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var time = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        return HTTPConnection(fd: fd)
    }

    /// Sends one request and reads its complete response.
    mutating func exchange(_ request: [UInt8], expectedHeader: String?) throws(Failure) -> Response {
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Self.classify(errno)
            }
            sent += count
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(512)
        var chunk = [UInt8](repeating: 0, count: 4096)
        var headerEnd: Int?
        var response = Response(status: 0, closes: false)
        var contentLength = 0
        while true {
            if headerEnd == nil, let end = Self.find([13, 10, 13, 10], in: buffer) {
                headerEnd = end + 4
                try Self.parseHead(buffer[..<end], into: &response, contentLength: &contentLength)
            }
            if let headerEnd, buffer.count >= headerEnd + contentLength {
                break
            }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Self.classify(errno)
            }
            if count == 0 {
                throw buffer.isEmpty ? .closed : .short
            }
            buffer.append(contentsOf: chunk[0..<count])
        }
        answered += 1
        if let expectedHeader, response.status == 200, response.responder == nil,
            !Self.hasHeader(expectedHeader, buffer[..<(headerEnd ?? 0)])
        {
            throw .wrong("no \(expectedHeader) header")
        }
        guard response.status == 200 else { throw .wrong("status \(response.status)") }
        return response
    }

    /// Closes without lingering: no TIME_WAIT piles up on the client side.
    func close() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(fd)
    }

    private static func parseHead(_ head: ArraySlice<UInt8>, into response: inout Response, contentLength: inout Int) throws(Failure) {
        let text = String(decoding: head, as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw .wrong("bad status line: \(statusLine.prefix(60))")
        }
        response.status = status
        response.closes = parts[0] == "HTTP/1.0"
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " ")
            switch name {
            case "content-length": contentLength = Int(value) ?? 0
            case "connection": response.closes = value.lowercased() == "close"
            case "x-pid": response.responder = value
            case "x-generation": response.generation = value
            case "x-slot": response.slot = value
            default: break
            }
        }
    }

    private static func hasHeader(_ name: String, _ head: ArraySlice<UInt8>) -> Bool {
        String(decoding: head, as: UTF8.self).lowercased().contains("\r\n" + name.lowercased() + ":")
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for index in 0...(haystack.count - needle.count) where haystack[index] == needle[0] {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
        }
        return nil
    }

    static func classify(_ error: Int32) -> Failure {
        switch error {
        case ECONNREFUSED, ENOENT: .refused
        case ECONNRESET, EPIPE: .reset
        case EAGAIN, ETIMEDOUT: .timedOut
        default: .other(String(cString: strerror(error)))
        }
    }

    static func milliseconds(_ duration: Duration) -> Int32 {
        Int32(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}

extension LoadTarget {
    /// The `X-Pid` of whoever answers one `GET /` on a new connection, or nil.
    public func responder(timeout: Duration = .seconds(2)) -> String? {
        guard var connection = try? HTTPConnection.connect(self, timeout: timeout) else { return nil }
        defer { connection.close() }
        let request = Array("GET / HTTP/1.1\r\nHost: baton-load\r\nConnection: close\r\n\r\n".utf8)
        return try? connection.exchange(request, expectedHeader: "X-Pid").responder
    }
}
