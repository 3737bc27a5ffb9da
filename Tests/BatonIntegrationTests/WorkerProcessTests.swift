import BatonCore
import Foundation
import Testing

/// What a worker receives from Baton, read from `/proc` of real workers.
@Suite(.serialized) struct WorkerProcessTests {
    func proc(_ pid: Int32, _ file: String) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/\(file)", encoding: .utf8)) ?? ""
    }

    @Test func workerGetsItsSocketsAndNothingElse() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--listen", "admin=unix://\(scratch.path)/admin.sock",
                "--workers", "2", "--ready", "delay:100ms", "--", "/bin/sleep", "1000",
            ], in: scratch)
        let status = try baton.waitUntilServing()
        let batonSockets = try Set(
            FileManager.default.contentsOfDirectory(atPath: "/proc/\(baton.process.processIdentifier)/fd")
                .compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(baton.process.processIdentifier)/fd/\($0)") }
                .filter { $0.hasPrefix("socket:") })

        var workerSockets: [Int: String] = [:]
        for worker in status.generations[0].workers {
            let pid = try #require(worker.pid)
            let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").sorted()
            #expect(fds == ["0", "1", "2", "3", "4"], "worker \(pid) must hold only stdio and its two sockets")
            let fd3 = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/3")
            let fd4 = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/4")
            #expect(batonSockets.contains(fd3) && batonSockets.contains(fd4), "the worker's sockets are the ones Baton holds")
            workerSockets[worker.slot] = fd3

            let environment = Set(proc(pid, "environ").split(separator: "\0").map(String.init))
            #expect(environment.contains("LISTEN_FDS=2"))
            #expect(environment.contains("LISTEN_PID=\(pid)"))
            #expect(environment.contains("LISTEN_FDNAMES=http:admin"))
            #expect(environment.contains("BATON_GENERATION=1"))
            #expect(environment.contains("BATON_SLOT=\(worker.slot)"))
            #expect(environment.contains { $0.hasPrefix("NOTIFY_SOCKET=/") && $0.contains("/baton-notify.") })

            let procStatus = proc(pid, "status")
            #expect(procStatus.contains("SigBlk:\t0000000000000000"), "empty signal mask")
            #expect(procStatus.contains("SigIgn:\t0000000000000000"), "default dispositions (SIGPIPE too)")
            let stat = proc(pid, "stat")
            let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
            #expect(fields[2] == "\(pid)", "the worker leads its own process group")
        }
        #expect(workerSockets[0] != workerSockets[1], "per-worker: each slot has its own SO_REUSEPORT socket")
        #expect(baton.stop() == 0)
    }

    @Test func reloadHandsTheSameSocketsToTheNextGeneration() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "2", "--ready", "delay:50ms",
                "--", "/bin/sleep", "1000",
            ], in: scratch)
        func socketOf(_ pid: Int32?) throws -> String {
            try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(try #require(pid))/fd/3")
        }
        let before = try baton.waitUntilServing().generations[0].workers.map { try socketOf($0.pid) }
        let reply = try baton.reload()
        #expect(reply.ok && reply.generation == 2)
        let after = try baton.waitUntilServing(generation: 2).generations.last!.workers.map { try socketOf($0.pid) }
        // Steered: each generation has sockets of its own in the same reuseport group, so
        // that the old one's queue is its own to finish (Docs/steering.md).
        #expect(
            before.count == 2 && after.count == 2 && Set(before).isDisjoint(with: after),
            "the new generation gets sockets of its own")
        #expect(baton.stop() == 0)
    }

    @Test func readinessFromAChildOfTheWorkerCounts() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--workers", "2", "--ready-timeout", "20s", "--",
                "/bin/sh", "-c", "sleep 0.2; systemd-notify --ready --status='from a child'; exec sleep 1000",
            ], in: scratch)
        let status = try baton.waitUntilServing()
        #expect(status.generations[0].workers.allSatisfy { $0.status == "from a child" })
        #expect(baton.stop() == 0)
    }

    @Test func execProbeDecidesReadiness() throws {
        let scratch = ScratchDirectory()
        let flag = "\(scratch.path)/ready-$BATON_SLOT"
        let baton = try BatonUnderTest(
            [
                "--workers", "2", "--ready", "exec:test -e \(flag)", "--", "/bin/sleep", "1000",
            ], in: scratch)
        let starting = try baton.waitForStatus("two starting workers") { status in
            status.generations.first?.workers.filter { $0.state == .starting }.count == 2
        }
        #expect(starting.phase == .starting)
        _ = FileManager.default.createFile(atPath: "\(scratch.path)/ready-0", contents: nil)
        _ = FileManager.default.createFile(atPath: "\(scratch.path)/ready-1", contents: nil)
        try baton.waitUntilServing()
        #expect(baton.stop() == 0)
    }

    @Test func prefixedOutputNamesGenerationAndSlot() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            [
                "--output", "prefix", "--ready", "delay:100ms", "--",
                "/bin/sh", "-c", "echo hello from $BATON_SLOT; echo oops >&2; exec sleep 1000",
            ], in: scratch)
        try baton.waitUntilServing()
        #expect(baton.stop() == 0)
        #expect(baton.log.contains("[g1/s0] hello from 0\n"))
        #expect(baton.log.contains("[g1/s0] oops\n"))
    }
}
