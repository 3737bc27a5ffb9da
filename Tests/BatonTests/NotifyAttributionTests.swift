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
}
