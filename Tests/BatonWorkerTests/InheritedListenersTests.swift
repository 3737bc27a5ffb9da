import BatonWorker
import Testing

/// The rules for reading inherited sockets from the environment, without any process.
@Suite struct InheritedListenersTests {
    let pid: Int32 = 456

    func parse(_ environment: [String: String]) throws(BatonWorkerError) -> InheritedListeners? {
        try InheritedListeners.parse(environment: environment, processID: pid)
    }

    func error(_ environment: [String: String]) -> BatonWorkerError? {
        do {
            _ = try parse(environment)
            return nil
        } catch {
            return error
        }
    }

    @Test func nothingInheritedWithoutTheVariables() throws {
        #expect(try parse([:]) == nil)
        #expect(try parse(["PATH": "/bin", "LISTEN_PID": "456"]) == nil)
        #expect(try parse(["LISTEN_FDS": "0", "LISTEN_PID": "456"]) == nil)
    }

    @Test func namedSocketsFromFdThreeOn() throws {
        let listeners = try #require(try parse(["LISTEN_FDS": "2", "LISTEN_PID": "456", "LISTEN_FDNAMES": "http:admin"]))
        #expect(listeners.source == .systemdNamed)
        #expect(listeners.entries == [.init(name: "http", descriptor: 3), .init(name: "admin", descriptor: 4)])
        #expect(try listeners.descriptor(named: "admin") == 4)
        #expect(try listeners.descriptor(named: "http") == 3)
    }

    @Test func wrongProcessIsAnError() {
        let failure = error(["LISTEN_FDS": "1", "LISTEN_PID": "123", "LISTEN_FDNAMES": "http"])
        #expect(failure?.code == .wrongProcess)
        #expect(failure?.description.contains("LISTEN_PID is 123 but this process is 456") == true)
    }

    @Test func missingOrMalformedVariablesAreErrors() {
        #expect(error(["LISTEN_FDS": "1"])?.description == "LISTEN_FDS is set but LISTEN_PID is not")
        #expect(error(["LISTEN_FDS": "two", "LISTEN_PID": "456"])?.description == "LISTEN_FDS is 'two', not a number of descriptors")
        #expect(error(["LISTEN_FDS": "-1", "LISTEN_PID": "456"])?.code == .malformedVariable)
        #expect(error(["LISTEN_FDS": "1", "LISTEN_PID": "me"])?.description == "LISTEN_PID is 'me', not a process id")
    }

    @Test func namesMustMatchTheCount() {
        let tooFew = error(["LISTEN_FDS": "3", "LISTEN_PID": "456", "LISTEN_FDNAMES": "http:admin"])
        #expect(tooFew?.code == .countMismatch)
        #expect(tooFew?.description == "LISTEN_FDNAMES names 2 sockets but LISTEN_FDS is 3")
        let tooMany = error(["LISTEN_FDS": "1", "LISTEN_PID": "456", "LISTEN_FDNAMES": "http:admin"])
        #expect(tooMany?.description == "LISTEN_FDNAMES names 2 sockets but LISTEN_FDS is 1")
    }

    @Test func emptyNamesAreKeptInPlace() throws {
        let listeners = try #require(try parse(["LISTEN_FDS": "2", "LISTEN_PID": "456", "LISTEN_FDNAMES": ":admin"]))
        #expect(listeners.names == ["", "admin"])
        #expect(try listeners.descriptor(named: "admin") == 4)
    }

    @Test func unknownNameIsAnErrorListingTheNames() throws {
        let listeners = try #require(try parse(["LISTEN_FDS": "1", "LISTEN_PID": "456", "LISTEN_FDNAMES": "admin"]))
        #expect(throws: BatonWorkerError.self) { try listeners.descriptor(named: "http") }
        do {
            _ = try listeners.descriptor(named: "http")
        } catch {
            #expect(error.code == .noSuchListener)
            #expect(error.description.hasPrefix("no inherited listener named 'http' (have: admin"))
        }
    }

    @Test func aSingleUnnamedSocketAnswersToAnyName() throws {
        let one = try #require(try parse(["LISTEN_FDS": "1", "LISTEN_PID": "456"]))
        #expect(one.source == .systemdUnnamed)
        #expect(one.names == ["unknown"])
        #expect(try one.descriptor(named: "http") == 3)
        let two = try #require(try parse(["LISTEN_FDS": "2", "LISTEN_PID": "456"]))
        #expect(throws: BatonWorkerError.self) { try two.descriptor(named: "http") }
    }

    @Test func serverStarterSocketsAreNamedByAddress() throws {
        let listeners = try #require(try parse(["SERVER_STARTER_PORT": "127.0.0.1:8080=5;[::1]:8081=6"]))
        #expect(listeners.source == .serverStarter)
        #expect(listeners.entries == [.init(name: "127.0.0.1:8080", descriptor: 5), .init(name: "[::1]:8081", descriptor: 6)])
        #expect(try listeners.descriptor(named: "[::1]:8081") == 6)
        let single = try #require(try parse(["SERVER_STARTER_PORT": "8080=4"]))
        #expect(try single.descriptor(named: "http") == 4)
        #expect(error(["SERVER_STARTER_PORT": "8080"])?.code == .malformedVariable)
        #expect(error(["SERVER_STARTER_PORT": "8080=x"])?.description == "SERVER_STARTER_PORT entry '8080=x' is not ADDRESS=DESCRIPTOR")
    }

    @Test func systemdTakesPrecedenceOverServerStarter() throws {
        let listeners = try #require(try parse(["LISTEN_FDS": "1", "LISTEN_PID": "456", "LISTEN_FDNAMES": "http", "SERVER_STARTER_PORT": "8080=7"]))
        #expect(listeners.source == .systemdNamed)
    }
}

@Suite struct ListenAddressTests {
    @Test func parsesHostPortIPv6AndUnix() throws {
        #expect(try ListenAddress(parsing: "127.0.0.1:8080") == .tcp(host: "127.0.0.1", port: 8080))
        #expect(try ListenAddress(parsing: "[::1]:80") == .tcp(host: "::1", port: 80))
        #expect(try ListenAddress(parsing: "unix:/run/app.sock") == .unix(path: "/run/app.sock"))
        #expect(ListenAddress.tcp(host: "::1", port: 80).description == "[::1]:80")
    }

    @Test(arguments: ["8080", "127.0.0.1", ":8080", "127.0.0.1:99999", "unix:relative.sock"])
    func rejectsMalformedAddresses(_ text: String) {
        #expect(throws: BatonWorkerError.self) { try ListenAddress(parsing: text) }
    }
}

@Suite struct ServiceNotifierMessageTests {
    @Test func readyWithStatus() {
        #expect(ServiceNotifier.message(["READY=1"], status: "serving on fd 3") == "READY=1\nSTATUS=serving on fd 3")
        #expect(ServiceNotifier.message(["STOPPING=1"], status: nil) == "STOPPING=1")
        #expect(ServiceNotifier.message([], status: "two\nlines") == "STATUS=two lines")
    }

    @Test func withoutNotifySocketNothingIsSent() {
        let notifier = ServiceNotifier(environment: [:])
        #expect(notifier.socketPath == nil)
        #expect(notifier.ready() == false)
    }
}
