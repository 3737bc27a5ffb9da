import Testing

@testable import Baton

/// Each protocol's environment, exactly as that protocol's own documentation writes it.
@Suite struct SocketHandoffTests {
    let listeners = [
        ListenerConfiguration(name: "http", address: .tcp(host: "127.0.0.1", port: 8080)),
        ListenerConfiguration(name: "v6", address: .tcp(host: "::1", port: 8443)),
        ListenerConfiguration(name: "dns", address: .udp(host: "0.0.0.0", port: 5353)),
        ListenerConfiguration(name: "admin", address: .unix(path: "/run/app/admin.sock")),
    ]

    func handoff(
        _ socketProtocol: SocketProtocol, command: [String] = ["./server"],
        inheritedPreload: String? = nil
    ) -> SocketHandoff {
        SocketHandoff(
            socketProtocol, command: command, listeners: listeners, generation: 7, slot: 2,
            supervisorPID: 4242, preloadLibrary: "/opt/baton/libbaton-preload.so",
            inheritedPreload: inheritedPreload)
    }

    @Test func systemd() {
        let result = handoff(.systemd)
        #expect(result.environment == ["LISTEN_FDS": "4", "LISTEN_FDNAMES": "http:v6:dns:admin"])
        #expect(result.processIDVariable == "LISTEN_PID")
    }

    @Test func systemdWithoutListenersSaysNothing() {
        let result = SocketHandoff(
            .systemd, command: ["./server"], listeners: [], generation: 1, slot: 0,
            supervisorPID: 1, preloadLibrary: "/x.so")
        #expect(result.environment.isEmpty)
        #expect(result.processIDVariable == nil)
    }

    @Test func einhorn() {
        let result = handoff(.einhorn)
        #expect(
            result.environment == [
                "EINHORN_FD_COUNT": "4", "EINHORN_FD_0": "3", "EINHORN_FD_1": "4", "EINHORN_FD_2": "5", "EINHORN_FD_3": "6",
                "EINHORN_MASTER_PID": "4242", "EINHORN_CHILD_INDEX": "2",
            ])
        #expect(result.processIDVariable == nil)
    }

    @Test func serverStarter() {
        let result = handoff(.serverStarter)
        #expect(
            result.environment == [
                "SERVER_STARTER_PORT": "127.0.0.1:8080=3;[::1]:8443=4;0.0.0.0:5353=5;/run/app/admin.sock=6",
                "SERVER_STARTER_GENERATION": "7",
            ])
        #expect(result.processIDVariable == nil)
    }

    @Test func preloadKeepsAnInheritedPreload() {
        #expect(
            handoff(.preload).environment == [
                "LD_PRELOAD": "/opt/baton/libbaton-preload.so", "BATON_PRELOAD_FD_COUNT": "4", "BATON_PRELOAD_DRAIN_SIGNAL": "15",
            ])
        #expect(
            handoff(.preload, inheritedPreload: "/usr/lib/libjemalloc.so").environment["LD_PRELOAD"]
                == "/opt/baton/libbaton-preload.so /usr/lib/libjemalloc.so")
    }

    @Test func noneSaysNothing() {
        #expect(handoff(.none).environment.isEmpty)
    }

    @Test(arguments: SocketProtocol.allCases)
    func descriptorPlaceholdersAreFilledInWithAnyProtocol(_ socketProtocol: SocketProtocol) {
        let result = handoff(socketProtocol, command: ["server", "--fd", "{fd:http}", "--admin-fd={fd:admin}", "{fd:v6}{fd:dns}", "{fd:http"])
        #expect(result.command == ["server", "--fd", "3", "--admin-fd=6", "45", "{fd:http"])
    }

    @Test func placeholderNames() {
        #expect(DescriptorPlaceholder.names(in: "--fd={fd:http},{fd:admin}") == ["http", "admin"])
        #expect(DescriptorPlaceholder.names(in: "{fd:unclosed").isEmpty)
        #expect(DescriptorPlaceholder.names(in: "plain").isEmpty)
    }
}
