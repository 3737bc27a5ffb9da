import CBatonShim
import Glibc
import Testing

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
