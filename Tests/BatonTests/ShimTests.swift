import CBatonShim
import CBatonTestSupport
import Glibc
import Testing

@testable import Baton

@Suite struct ShimTests {
    @Test func peerCredentialsAreThoseOfTheProcessAtTheOtherEnd() throws {
        var ends: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0)
        defer {
            close(ends[0])
            close(ends[1])
        }
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        #expect(baton_peer_credentials(ends[0], &pid, &uid, &gid) == 0)
        #expect(pid == getpid())
        #expect(uid == getuid())
        #expect(gid == getgid())
    }

    @Test func peerCredentialsOfNoDescriptorAreAnErrno() {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        #expect(baton_peer_credentials(-1, &pid, &uid, &gid) == EBADF)
    }
}

/// Starting a worker leaves Baton as it was.
@Suite struct SpawnTests {
    /// Starts `/bin/true` (as `credentials`, when given) and waits for it; its exit status.
    func runTrue(as credentials: ProcessSpawner.Credentials? = nil) throws -> Int32 {
        let pid = try ProcessSpawner.spawn(
            .init(command: ["/bin/true"], environment: ["PATH": "/usr/bin:/bin"], directory: nil, credentials: credentials))
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        return status
    }

    /// A worker that shares the supervisor's memory until its execve changes nothing of it.
    @Test func aWorkerStartedAsBatonsUserLeavesItsMemoryAsItWas() throws {
        #expect(try runTrue() == 0)
        #expect(baton_is_dumpable() == 1)
    }

    /// The kernel marks the memory of a process whose uid changes as not dumpable: a
    /// worker started as another user must not take Baton's memory with it there (it would
    /// if it shared Baton's memory until its execve).
    @Test(.enabled(if: geteuid() == 0, "starting a worker as another user needs root"))
    func aWorkerStartedAsAnotherUserLeavesBatonDumpable() throws {
        #expect(baton_is_dumpable() == 1)
        #expect(try runTrue(as: .init(uid: 65534, gid: 65534, groups: [65534])) == 0)
        #expect(baton_is_dumpable() == 1)
    }
}
