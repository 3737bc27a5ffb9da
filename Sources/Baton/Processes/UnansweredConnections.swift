import CBatonShim
import Glibc

/// The connections on a leaving generation's ports that their server has not answered
/// yet, from the kernel (sock_diag), and which of them a worker holds (its descriptors in
/// `/proc`). A worker out of rotation gets its drain signal only once its sockets are
/// empty and it holds none, so that a server whose shutdown drops what it accepted has
/// answered it by then, however busy the machine and the worker are.
///
/// A connection counts as unanswered while its server has sent nothing on it: a request
/// received (read or not) and not answered, or, for its first second, a connection on
/// which the client has not written yet (a client between `connect` and its first
/// request). A keep-alive connection that was answered once does not hold the drain: the
/// requests that follow on it are the server's to finish when it drains, and what it
/// does with them no waiting beforehand can change.
struct UnansweredConnections {
    /// A connection on which nothing was written yet holds the drain this long.
    static let silentConnectionBound: UInt32 = 1000

    /// Inodes of the sockets of unanswered connections on the ports looked at.
    private let inodes: Set<UInt64>

    /// The unanswered connections on the ports of `listeners` (listening TCP sockets);
    /// nil when the kernel cannot say, in which case a caller knows nothing.
    init?(listeners: [Int32]) {
        var inodes = Set<UInt64>()
        guard let connections = Self.connections(on: listeners) else { return nil }
        for connection in connections {
            guard connection.has_bytes_sent else { return nil }
            let silent = connection.bytes_received == 0 && connection.milliseconds_since_received >= Self.silentConnectionBound
            if connection.bytes_sent == 0 && !silent {
                inodes.insert(connection.inode)
            }
        }
        self.inodes = inodes
    }

    /// Whether there is none at all: then no worker needs to be looked at.
    var isEmpty: Bool { inodes.isEmpty }

    /// Whether the process `pid`, or one of its descendants (a server's own workers, see
    /// ``children(of:)``), holds one; nil when its descriptors cannot be read. A process
    /// that is gone holds none.
    func areHeld(by pid: pid_t) -> Bool? {
        guard !inodes.isEmpty else { return false }
        return Self.anySocket(heldBy: pid) { inodes.contains($0) }
    }

    /// Whether none of the processes `pids` nor any of their descendants holds a socket
    /// that this process (Baton) does not hold too: the sockets they share are the
    /// listeners Baton gave its workers, so workers with no other hold no connection, and
    /// owe nothing, without asking the kernel, whose answer costs a walk of its whole
    /// connection table (about a millisecond). False when descriptors cannot be read.
    static func noneHeld(by pids: [pid_t]) -> Bool {
        guard let own = ownSocketInodes() else { return false }
        return pids.allSatisfy { anySocket(heldBy: $0) { !own.contains($0) } == false }
    }

    /// The inodes of this process's sockets, by `fstat` of each descriptor: a Baton with
    /// thousands of listeners reads them in well under a millisecond.
    private static func ownSocketInodes() -> Set<UInt64>? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        let listing = dirfd(directory)
        var inodes = Set<UInt64>()
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            guard let fd = Int32(name), fd != listing else { continue }
            // A descriptor closed meanwhile is skipped; one opened again in its place is
            // Baton's too, and no worker holds it unless Baton gave it.
            var info = stat()
            if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK {
                inodes.insert(UInt64(info.st_ino))
            }
        }
        return inodes
    }

    /// Whether `pid` or a descendant holds a socket whose inode `matches`; nil when
    /// descriptors cannot be read. Stops at the first.
    private static func anySocket(heldBy pid: pid_t, where matches: (UInt64) -> Bool) -> Bool? {
        var pending = [pid]
        var seen = Set<pid_t>()
        while let process = pending.popLast() {
            guard seen.insert(process).inserted else { continue }
            switch socketInodes(of: process, until: matches) {
            case .gone: continue
            case .unreadable: return nil
            case .read(let held): if held.contains(where: matches) { return true }
            }
            pending += children(of: process)
        }
        return false
    }

    private static func connections(on listeners: [Int32]) -> [baton_connection]? {
        var capacity = 256
        while true {
            var connections = [baton_connection](repeating: baton_connection(), count: capacity)
            var count = 0
            let error = baton_listener_connections(listeners, listeners.count, &connections, capacity, &count)
            if error == ENOBUFS, count > capacity {
                capacity = count + 64
                continue
            }
            guard error == 0 else { return nil }
            return Array(connections.prefix(count))
        }
    }

    private enum Descriptors {
        case read(Set<UInt64>)
        case gone
        case unreadable
    }

    /// The inodes of the sockets among the process's descriptors (`socket:[inode]`), read
    /// in descriptor order up to the first that `stop` is true for.
    private static func socketInodes(of pid: pid_t, until stop: (UInt64) -> Bool = { _ in false }) -> Descriptors {
        guard let directory = opendir("/proc/\(pid)/fd") else {
            return errno == ENOENT ? .gone : .unreadable
        }
        defer { closedir(directory) }
        var inodes = Set<UInt64>()
        var target = [CChar](repeating: 0, count: 64)
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            guard Int32(name) != nil else { continue }
            let length = readlink("/proc/\(pid)/fd/\(name)", &target, target.count - 1)
            guard length > 8 else { continue }
            let link = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard link.hasPrefix("socket:["), let inode = UInt64(link.dropFirst(8).dropLast()) else { continue }
            inodes.insert(inode)
            if stop(inode) { break }
        }
        return .read(inodes)
    }

    /// The children of the process's main thread (`/proc/<pid>/task/<pid>/children`): a
    /// server that runs its own workers forks them from its main loop (gunicorn, unicorn,
    /// uWSGI, nginx, Node's cluster). A child that another of its threads forked is not
    /// seen. The other threads are not listed on purpose: an entry that `/proc/<pid>/task`
    /// makes the kernel keep for a thread makes the reap of the worker wait out that
    /// thread's own exit, and under load that cost Baton's signal thread about 40% of its
    /// CPU in a reload (Docs/benchmarks.md, "Reaping a worker whose threads were listed").
    private static func children(of pid: pid_t) -> [pid_t] {
        guard let text = try? FileContents.read("/proc/\(pid)/task/\(pid)/children") else { return [] }
        return text.split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) }
    }
}
