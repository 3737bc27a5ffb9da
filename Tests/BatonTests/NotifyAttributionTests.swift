import Glibc
import Testing

@testable import Baton

/// Where notify sockets live and whose messages count, without starting Baton.
@Suite struct NotifyAttributionTests {
    @Test func theDirectoryIsPrivateAndGoesAway() throws {
        let directory = try NotifyDirectory.make()
        var status = stat()
        #expect(lstat(directory.path, &status) == 0)
        #expect(status.st_mode & S_IFMT == S_IFDIR)
        #expect(status.st_mode & 0o777 == 0o700, "only Baton's user may enter it")
        #expect(status.st_uid == geteuid())
        let address = directory.address(of: WorkerID(generation: 3, slot: 1))
        #expect(address == "\(directory.path)/g3.s1")
        let socket = try NotifySocket(address: address) { _, _ in }
        #expect(socket.isPrivate)
        #expect(access(address, F_OK) == 0)
        socket.close()
        #expect(access(address, F_OK) != 0, "a closed socket leaves no file")
        directory.remove()
        #expect(access(directory.path, F_OK) != 0)
    }

    @Test func aSenderCountsOnlyInItsWorkersTree() {
        #expect(!ProcessAncestry.belongs(0, to: getpid(), trustingExited: true), "no credentials: no one's")
        #expect(ProcessAncestry.belongs(getpid(), to: getpid(), trustingExited: false), "the worker itself")
        #expect(ProcessAncestry.belongs(getpid(), to: getppid(), trustingExited: false), "a live descendant")
        #expect(!ProcessAncestry.belongs(getppid(), to: getpid(), trustingExited: true), "a live process outside the tree")
        // A pid no process has: an exited sender, believed only where no one else can reach.
        var gone: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        #expect(posix_spawn(&gone, "/bin/true", nil, nil, argv, nil) == 0)
        waitpid(gone, nil, 0)
        #expect(!ProcessAncestry.belongs(gone, to: getpid(), trustingExited: false))
        #expect(ProcessAncestry.belongs(gone, to: getpid(), trustingExited: true))
    }

    /// A process that joined a worker's process group from outside (possible while both
    /// share a session) is not in the worker's tree: only the worker's session and its
    /// descendants are, and a session cannot be joined.
    @Test func aMemberOfTheWorkersGroupFromOutsideDoesNotCount() throws {
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { argv.forEach { free($0) } }
        func spawn(group: pid_t) throws -> pid_t {
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
            posix_spawnattr_setpgroup(&attributes, group)
            var pid: pid_t = 0
            try #require(posix_spawn(&pid, "/bin/sleep", nil, &attributes, argv, nil) == 0)
            return pid
        }
        let worker = try spawn(group: 0)
        let joiner = try spawn(group: worker)
        defer {
            for pid in [worker, joiner] {
                kill(pid, SIGKILL)
                waitpid(pid, nil, 0)
            }
        }
        #expect(getpgid(joiner) == worker, "the joiner is in the worker's group")
        #expect(!ProcessAncestry.belongs(joiner, to: worker, trustingExited: false), "but not in its tree")
        #expect(ProcessAncestry.belongs(worker, to: worker, trustingExited: false))
    }
}
