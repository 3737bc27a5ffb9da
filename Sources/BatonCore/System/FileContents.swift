import Glibc

/// Reading small files whole: `/proc` entries, symbolic links.
package enum FileContents {
    /// Where a symbolic link points.
    package static func link(_ path: String) throws(SystemError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { throw .last("readlink", subject: path) }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The whole file as UTF-8 text.
    package static func read(_ path: String) throws(SystemError) -> String {
        String(decoding: try bytes(path), as: UTF8.self)
    }

    /// The file's first `limit` bytes, or all of it when it is shorter.
    package static func bytes(_ path: String, atMost limit: Int = .max) throws(SystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .last("open", subject: path) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < limit {
            let wanted = min(chunk.count, limit - bytes.count)
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, wanted) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .last("read", subject: path)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return bytes
    }
}
