import BatonCore
import Glibc
import Testing

@Suite struct SystemErrorTests {
    @Test func namesTheSubjectTheCallAndTheReason() {
        #expect(
            SystemError("bind", errno: EADDRINUSE, subject: "listener http tcp://127.0.0.1:8080").description
                == "listener http tcp://127.0.0.1:8080: bind: Address already in use")
        #expect(SystemError("socket", errno: EMFILE).description == "socket: Too many open files")
    }

    @Test func fileContentsReadsProcEntriesAndLinks() throws {
        #expect(try FileContents.link("/proc/self/exe").hasPrefix("/"))
        #expect(Int32(try FileContents.read("/proc/self/stat").prefix { $0 != " " }) == getpid())
        #expect(throws: SystemError.self) { try FileContents.read("/nonexistent/baton") }
    }
}
