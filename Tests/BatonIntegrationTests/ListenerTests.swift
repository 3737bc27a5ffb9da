import BatonCore
import Foundation
import Testing

/// Every kind of listener, as a real worker sees it through its inherited descriptors.
@Suite(.serialized) struct ListenerTests {
    /// Describes each inherited socket from inside the worker, says it is ready, sleeps.
    static let probe = """
        import json, os, socket, sys
        names = os.environ["LISTEN_FDNAMES"].split(":")
        seen = {}
        for index, name in enumerate(names):
            s = socket.socket(fileno=3 + index)
            seen[name] = {
                "family": s.family.name, "type": s.type.name, "address": str(s.getsockname()),
                "reuseport": s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT),
                "listening": s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
                "inode": os.fstat(3 + index).st_ino,
            }
            s.detach()
        with open(sys.argv[1] % os.environ["BATON_SLOT"], "w") as out:
            json.dump(seen, out)
        notify = os.environ["NOTIFY_SOCKET"]
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(
            b"READY=1", "\\0" + notify[1:] if notify.startswith("@") else notify)
        os.execvp("sleep", ["sleep", "1000"])
        """

    struct Seen: Decodable {
        var family: String
        var type: String
        var address: String
        var reuseport: Int
        var listening: Int
        var inode: UInt64
    }

    @Test func everyKindOfListenerReachesTheWorkers() throws {
        let scratch = ScratchDirectory()
        let (v4, v6, udp, shared) = (freePort(), freePort(), freePort(), freePort())
        try scratch.write("probe.py", Self.probe)
        try scratch.write(
            "baton.toml",
            """
            [[listener]]
            name = "v4"
            address = "tcp://127.0.0.1:\(v4)"
            backlog = 77

            [[listener]]
            name = "v6"
            address = "tcp://[::1]:\(v6)"

            [[listener]]
            name = "dns"
            address = "udp://127.0.0.1:\(udp)"

            [[listener]]
            name = "unix"
            address = "unix://\(scratch.path)/app.sock"
            mode = "0660"

            [[listener]]
            name = "shared"
            address = "tcp://127.0.0.1:\(shared)"
            reuseport = "shared"

            [workers]
            command = ["python3", "probe.py", "\(scratch.path)/slot-%s.json"]
            count = 2
            """)
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        let status = try baton.waitUntilServing()

        var slots: [[String: Seen]] = []
        for slot in 0..<2 {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(scratch.path)/slot-\(slot).json"))
            slots.append(try JSONDecoder().decode([String: Seen].self, from: data))
        }
        for seen in slots {
            #expect(seen["v4"]?.family == "AF_INET" && seen["v4"]?.type == "SOCK_STREAM")
            #expect(seen["v4"]?.address == "('127.0.0.1', \(v4))")
            #expect(seen["v6"]?.family == "AF_INET6" && seen["v6"]?.address.hasPrefix("('::1', \(v6)") == true)
            #expect(seen["dns"]?.family == "AF_INET" && seen["dns"]?.type == "SOCK_DGRAM")
            #expect(seen["unix"]?.family == "AF_UNIX" && seen["unix"]?.address == "\(scratch.path)/app.sock")
            for name in ["v4", "v6", "unix", "shared"] {
                #expect(seen[name]?.listening == 1, "\(name) is listening")
            }
            for name in ["v4", "v6", "dns", "shared"] {
                #expect(seen[name]?.reuseport == 1, "\(name) has SO_REUSEPORT")
            }
        }
        for name in ["v4", "v6", "dns"] {
            #expect(slots[0][name]?.inode != slots[1][name]?.inode, "\(name) is per-worker: one socket per slot")
        }
        for name in ["unix", "shared"] {
            #expect(slots[0][name]?.inode == slots[1][name]?.inode, "\(name) is one socket for all slots")
        }

        let attributes = try FileManager.default.attributesOfItem(atPath: "\(scratch.path)/app.sock")
        #expect((attributes[.posixPermissions] as? Int) == 0o660)
        let listeners = Dictionary(uniqueKeysWithValues: status.listeners.map { ($0.name, $0) })
        #expect(listeners["v4"]?.sockets.map(\.backlog) == [77, 77])
        let somaxconn = UInt32(
            try String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(listeners["v6"]?.sockets.map(\.backlog) == [somaxconn, somaxconn], "the default backlog is net.core.somaxconn")
        #expect(listeners["shared"]?.sockets.count == 1)

        // Traffic reaches the sockets through the kernel, not through Baton.
        let connected = connects(to: v6, family: AF_INET6)
        #expect(connected, "a client can connect over IPv6 while the workers hold the socket")
        #expect(baton.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(scratch.path)/app.sock"), "the unix socket's file is removed at exit")
    }

    func connects(to port: Int, family: Int32) -> Bool {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = UInt16(port).bigEndian
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }
}
