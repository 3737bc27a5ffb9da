import Glibc

/// The private directory that holds the workers' notify sockets: made by `mkdtemp`
/// (mode 0700, owned by Baton's user) under `$RUNTIME_DIRECTORY`, `$TMPDIR` or `/tmp`,
/// with an unpredictable name. Another user can neither bind a worker's address first
/// nor send to it, as they could to an abstract address, which any process in the
/// network namespace may bind or reach and `/proc/net/unix` lists.
struct NotifyDirectory: Codable, Equatable {
    let path: String

    /// Makes a new directory.
    static func make() throws(SystemError) -> NotifyDirectory {
        func variable(_ name: String) -> String? {
            guard let value = getenv(name) else { return nil }
            return String(cString: value)
        }
        // systemd's RuntimeDirectory= may name several, separated by colons.
        let runtime = variable("RUNTIME_DIRECTORY")?.split(separator: ":").first.map(String.init)
        let candidates: [String] = [runtime, variable("TMPDIR"), "/tmp"].compactMap { $0 }
        let base = candidates.first { !$0.isEmpty && access($0, W_OK | X_OK) == 0 } ?? "/tmp"
        var template = Array("\(base)/baton-notify.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!).map { String(cString: $0) } }
        guard let made else { throw .last("mkdtemp", subject: "notify socket directory in \(base)") }
        return NotifyDirectory(path: made)
    }

    /// Lets other users through the directory (mode 0711), still without listing or
    /// adding to it, so that a worker running as another user reaches its own socket,
    /// which it owns alone.
    func allowTraversal() throws(SystemError) {
        guard chmod(path, 0o711) == 0 else { throw .last("chmod", subject: "notify socket directory \(path)") }
    }

    /// The `NOTIFY_SOCKET` of `worker`.
    func address(of worker: WorkerID) -> String {
        "\(path)/\("\(worker)".split(separator: "/").joined(separator: "."))"
    }

    /// Removes the directory and what is left in it (sockets of workers still running
    /// when Baton exits).
    func remove() {
        guard let directory = opendir(path) else { return }
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            if name != "." && name != ".." { unlink("\(path)/\(name)") }
        }
        closedir(directory)
        rmdir(path)
    }
}
