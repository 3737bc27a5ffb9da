import BatonCore
import Foundation
import Testing

/// A worker's readiness comes from the worker or its descendants alone: its notify
/// socket sits in a directory only Baton's user can enter, and a datagram from a live
/// process outside the worker's tree is dropped.
@Suite(.serialized) struct NotifySocketTests {
    /// `python3 -c` program: `send` sends `READY=1` to the address, `bind` binds it;
    /// prints `done` or `refused ERRNO`, then with `stay` sleeps until killed.
    static let client = #"""
        import socket, sys, time
        action, address, stay = sys.argv[1], sys.argv[2], sys.argv[3] == "stay"
        target = "\0" + address[1:] if address.startswith("@") else address
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if action == "send":
                s.sendto(b"READY=1", target)
            else:
                s.bind(target)
            print("done", flush=True)
        except OSError as error:
            print("refused", error.errno, flush=True)
        if stay:
            time.sleep(300)
        """#

    /// Starts the client, as `nobody` when `asNobody`; returns it and its one line.
    static func client(_ action: String, _ address: String, stay: Bool, asNobody: Bool) throws -> (Process, String) {
        let process = Process()
        let pipe = Pipe()
        let command = ["/usr/bin/python3", "-c", client, action, address, stay ? "stay" : "exit"]
        let launcher = asNobody ? ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] : []
        process.executableURL = URL(fileURLWithPath: (launcher + command)[0])
        process.arguments = Array((launcher + command).dropFirst())
        process.standardOutput = pipe
        try process.run()
        var output = Data()
        while !output.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            output.append(chunk)
        }
        return (process, String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func notifySocket(of pid: Int32) -> String? {
        let environment = (try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8)) ?? ""
        return environment.split(separator: "\0").first { $0.hasPrefix("NOTIFY_SOCKET=") }.map { String($0.dropFirst(14)) }
    }

    static var canSwitchUser: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
    }

    /// Another user can neither send to a worker's notify socket nor bind a name in its
    /// directory, nor block the next generation by binding the address Baton used to
    /// choose for it.
    @Test func anotherUserCannotReachOrTakeTheNotifyAddress() throws {
        guard Self.canSwitchUser else {
            print("skipped: needs root and setpriv to act as another user")
            return
        }
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--ready", "delay:100ms", "--", "/bin/sleep", "1000",
            ], in: scratch)
        defer { baton.stop() }
        let worker = try #require(try baton.waitUntilServing().generations[0].workers[0].pid)
        let address = try #require(Self.notifySocket(of: worker))
        #expect(!address.hasPrefix("@"), "an abstract address can be reached by anyone: \(address)")

        let (_, sent) = try Self.client("send", address, stay: false, asNobody: true)
        #expect(sent.hasPrefix("refused"), "another user must not reach \(address): \(sent)")
        let directory = (address as NSString).deletingLastPathComponent
        let (_, bound) = try Self.client("bind", "\(directory)/g2.s0", stay: false, asNobody: true)
        #expect(bound.hasPrefix("refused"), "another user must not bind in \(directory): \(bound)")

        // The name Baton's generation 2 would have had at an abstract address.
        let (squatter, squatted) = try Self.client("bind", "@baton/\(baton.process.processIdentifier)/g2/s0", stay: true, asNobody: true)
        defer { kill(squatter.processIdentifier, SIGKILL) }
        #expect(squatted == "done")
        let reply = try baton.reload()
        #expect(reply.ok, "a name another user bound must not block the reload: \(reply)\n\(baton.log)")
        #expect(baton.stop() == 0)
    }

    /// `READY=1` from processes outside the worker's tree does not make its generation
    /// ready: from another user it cannot be sent, from a live process of Baton's own
    /// user it is dropped and logged.
    @Test func aForgedReadyDoesNotMakeAGenerationReady() throws {
        guard Self.canSwitchUser else {
            print("skipped: needs root and setpriv to act as another user")
            return
        }
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--ready", "notify", "--ready-timeout", "120s",
                "--", "/bin/sleep", "1000",
            ], in: scratch)
        defer { baton.stop() }
        let status = try baton.waitForStatus("a started worker") { $0.generations.first?.workers.first?.pid != nil }
        let worker = try #require(status.generations[0].workers[0].pid)
        let address = try #require(Self.notifySocket(of: worker))

        // Another user's forger sends and exits at once: the case a check of its
        // (gone) process tree cannot decide.
        let (_, fromNobody) = try Self.client("send", address, stay: false, asNobody: true)
        #expect(fromNobody.hasPrefix("refused"), "another user must not reach \(address): \(fromNobody)")
        let (forger, fromForger) = try Self.client("send", address, stay: true, asNobody: false)
        defer { kill(forger.processIdentifier, SIGKILL) }
        #expect(fromForger == "done")
        let dropped = "from pid \(forger.processIdentifier), not the worker or a live descendant of it, dropped"
        let deadline = Date().addingTimeInterval(30)
        while !baton.log.contains(dropped) && Date() < deadline {
            usleep(20_000)
        }
        #expect(baton.log.contains(dropped), "\(baton.log)")
        let after = try baton.status()
        #expect(after.generations[0].workers[0].state != .ready, "a forged READY=1 made the worker ready")
    }

    /// A worker of generation 1 forks a helper that tries to join the process group of
    /// a generation 2 worker that never gets ready, reads that worker's `NOTIFY_SOCKET`
    /// from `/proc/PID/environ` and sends `READY=1` to it, then stays alive. Each worker
    /// leads its own session, which no process can join from outside, so the helper
    /// stays outside the worker's tree and its message is dropped (issue 26, defect 1).
    @Test func aWorkerCannotJoinAnotherWorkersTreeToMakeItReady() throws {
        let scratch = ScratchDirectory()
        let trigger = "\(scratch.path)/target"
        let worker = #"""
            import os, socket, sys, time
            def notify(address, text):
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(text.encode(), address)
            if os.environ["BATON_GENERATION"] != "1":
                time.sleep(1000)
            notify(os.environ["NOTIFY_SOCKET"], "READY=1")
            trigger = sys.argv[1]
            while not os.path.exists(trigger):
                time.sleep(0.02)
            target = int(open(trigger).read())
            if os.fork() == 0:
                try:
                    os.setpgid(0, target)
                    joined = "joined"
                except OSError as error:
                    joined = "refused %d" % error.errno
                entries = open("/proc/%d/environ" % target, "rb").read().split(b"\0")
                address = next(e[14:] for e in entries if e.startswith(b"NOTIFY_SOCKET=")).decode()
                notify(address, "READY=1\nSTATUS=forged")
                with open(trigger + ".new", "w") as report:
                    report.write("%d %s" % (os.getpid(), joined))
                os.rename(trigger + ".new", trigger + ".sent")
                time.sleep(1000)
                os._exit(0)
            time.sleep(1000)
            """#
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--ready", "notify", "--ready-timeout", "120s",
                "--", "/usr/bin/python3", "-c", worker, trigger,
            ], in: scratch)
        defer { baton.stop() }
        try baton.waitUntilServing(generation: 1)
        let reply = try ControlClient.send(ControlRequest(command: .reload), to: baton.controlSocket)
        #expect(reply.ok, "\(reply)")
        let started = try baton.waitForStatus("generation 2 started") { status in
            status.generations.first { $0.number == 2 }?.workers.first?.pid != nil
        }
        let target = try #require(started.generations.first { $0.number == 2 }?.workers.first?.pid)
        try scratch.write("target", "\(target)")
        _ = try baton.waitForStatus("the helper sent its READY=1") { _ in FileManager.default.fileExists(atPath: trigger + ".sent") }
        let sent = try String(contentsOfFile: trigger + ".sent", encoding: .utf8).split(separator: " ")
        let helper = try #require(Int32(sent[0]))
        defer { kill(helper, SIGKILL) }
        #expect(sent.dropFirst().joined(separator: " ") == "refused \(EPERM)", "another worker's group must not be joinable: \(sent)")
        let dropped = "notification for worker g2/s0 from pid \(helper), not the worker or a live descendant of it, dropped"
        let after = try baton.waitForStatus("the forged READY=1 dropped or believed") { status in
            baton.log.contains(dropped) || status.generations.first { $0.number == 2 }?.workers.first?.state == .ready
        }
        let forged = after.generations.first { $0.number == 2 }?.workers.first
        #expect(forged?.state != .ready, "a forged READY=1 made generation 2 ready: \(baton.log)")
        #expect(forged?.status != "forged", "a forged STATUS= was believed")
        #expect(baton.log.contains(dropped), "\(baton.log)")
        #expect(after.generations.first { $0.role == .serving }?.number == 1, "generation 1 still serves")
    }
}
