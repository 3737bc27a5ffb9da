import BatonCore
import BatonLoad
import Foundation
import Testing

/// Nothing a worker started outlives its slot, and no worker outlives Baton: the drain
/// signal reaches the worker's process group, what is left of the group when the worker
/// exits is killed at the end of the drain timeout, and a worker gets its drain signal
/// when Baton dies (its parent-death signal).
@Suite(.serialized) struct WorkerLifetimeTests {
    /// An HTTP server on the socket at fd 3 that leaves `<pid>.drained` in the directory
    /// it is given when SIGTERM reaches it, and exits.
    static let server = #"""
        import os, signal, socket, sys

        directory = sys.argv[1]
        listener = socket.socket(fileno=3)

        def drain(number, frame):
            open(f"{directory}/{os.getpid()}.drained", "w").close()
            os._exit(0)

        signal.signal(signal.SIGTERM, drain)
        while True:
            connection, _ = listener.accept()
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-Pid: %d\r\n\r\nok" % os.getpid())
            connection.close()
        """#

    /// Live (not zombie) processes of process group `group`, from `/proc`.
    static func members(of group: Int32) -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap(Int32.init).filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.range(of: ")", options: .backwards)
            else { return false }
            let fields = stat[close.upperBound...].split(separator: " ")
            return fields.count > 2 && fields[0] != "Z" && fields[2] == "\(group)"
        }
    }

    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.range(of: ")", options: .backwards)
        else { return false }
        return stat[close.upperBound...].split(separator: " ").first != "Z"
    }

    /// Waits (bounded) for `condition`; returns whether it came true.
    static func waitFor(timeout: Double = 30, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// `sh -c 'server & wait'`: the shell, not the server, is the worker. After a reload
    /// nothing of the old worker's process group is left, the server drained through its
    /// own handler; after a stop nothing of the new one is left once Baton has exited.
    @Test func aWrapperThatDoesNotExecLeavesNothingOfItsGroup() throws {
        let scratch = ScratchDirectory()
        try scratch.write("server.py", Self.server)
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--ready", "delay:100ms", "--drain-timeout", "20s",
                "--", "/bin/sh", "-c", "/usr/bin/python3 \(scratch.path)/server.py \(scratch.path) & wait",
            ], in: scratch)
        defer { baton.stop() }
        let first = try #require(try baton.waitUntilServing().generations[0].workers[0].pid)
        defer { kill(-first, SIGKILL) }
        #expect(Self.waitFor { Self.members(of: first).count == 2 }, "the shell and its server")
        let oldServer = Self.members(of: first).first { $0 != first }

        #expect(try baton.reload().ok)
        let second = try #require(try baton.waitUntilServing(generation: 2).generations.last?.workers[0].pid)
        defer { kill(-second, SIGKILL) }
        #expect(
            Self.waitFor { Self.members(of: first).isEmpty },
            "the old generation's group must be gone: \(Self.members(of: first))\n\(baton.log)")
        if let oldServer {
            #expect(
                FileManager.default.fileExists(atPath: "\(scratch.path)/\(oldServer).drained"),
                "the server behind the wrapper must get the drain signal")
        }

        #expect(Self.waitFor { Self.members(of: second).count == 2 })
        #expect(baton.stop() == 0)
        #expect(Self.members(of: second).isEmpty, "nothing of the last group may outlive Baton: \(Self.members(of: second))")
    }

    /// A process of the worker's group that ignores the drain signal outlives the worker
    /// only until the drain timeout: then it gets SIGKILL, and Baton exits after it.
    @Test func whatIgnoresTheDrainSignalIsKilledAtTheDrainTimeout() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--ready", "delay:100ms", "--drain-timeout", "2s",
                "--", "/bin/sh", "-c", "(trap '' TERM; exec sleep 1000) & wait",
            ], in: scratch)
        defer { baton.stop() }
        let group = try #require(try baton.waitUntilServing().generations[0].workers[0].pid)
        defer { kill(-group, SIGKILL) }
        #expect(Self.waitFor { Self.members(of: group).count == 2 }, "the shell and its sleep")
        #expect(baton.stop() == 0)
        #expect(Self.members(of: group).isEmpty, "nothing of the group may outlive Baton: \(Self.members(of: group))")
        #expect(baton.log.contains("outlived its drain timeout: sending SIGKILL to the group"), "\(baton.log)")
    }

    /// Baton killed with SIGKILL while serving under load: its workers get their drain
    /// signal (they leave their mark) and exit; none is left running.
    @Test func workersDrainWhenBatonIsKilled() throws {
        let scratch = ScratchDirectory()
        try scratch.write("server.py", Self.server)
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--ready", "delay:100ms",
                "--", "/usr/bin/python3", "\(scratch.path)/server.py", scratch.path,
            ], in: scratch)
        let pids = try baton.waitUntilServing().generations[0].workers.compactMap(\.pid)
        defer { pids.forEach { kill(-$0, SIGKILL) } }
        #expect(pids.count == 2)
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 4
        configuration.maximumDuration = .seconds(60)
        let load = LoadGenerator(configuration)
        load.start()
        #expect(Self.waitFor { load.answered > 20 }, "the load must be served before Baton dies")

        kill(baton.process.processIdentifier, SIGKILL)
        _ = baton.waitForExit()
        let allExited = Self.waitFor { pids.allSatisfy { !Self.isAlive($0) } }
        let report = load.stop()
        #expect(report.succeeded > 20)
        #expect(allExited, "workers must exit when Baton dies: \(pids.filter(Self.isAlive)) still run")
        for pid in pids {
            #expect(
                FileManager.default.fileExists(atPath: "\(scratch.path)/\(pid).drained"),
                "worker \(pid) must exit through its drain signal")
        }
    }
}
