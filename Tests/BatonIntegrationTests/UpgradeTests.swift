import BatonCore
import BatonLoad
import Foundation
import Synchronization
import Testing

/// `batonctl upgrade`: Baton executes its own file again, keeping its pid, its sockets
/// and its workers, under load.
@Suite(.serialized) struct UpgradeTests {
    /// A copy of baton in the scratch directory, which the test can replace.
    func installBaton(in scratch: ScratchDirectory) throws -> String {
        let path = "\(scratch.path)/baton"
        try FileManager.default.copyItem(atPath: Products.path("baton"), toPath: path)
        return path
    }

    func batonctl(_ arguments: [String], _ baton: BatonUnderTest) throws -> (status: Int32, output: String) {
        try run(Products.path("batonctl"), arguments + ["-s", baton.controlSocket])
    }

    @Test func upgradeKeepsPidSocketsAndWorkersUnderLoad() throws {
        let scratch = ScratchDirectory()
        let executable = try installBaton(in: scratch)
        let (port, metricsPort) = (freePort(), freePort())
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "3", "--drain-timeout", "10s",
                "--metrics", "tcp://127.0.0.1:\(metricsPort)", "--", Products.path("baton-demo"),
            ], in: scratch, executable: executable)
        let before = try baton.waitUntilServing()
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 8
        let load = LoadGenerator(configuration)
        load.start()
        // /ready asked throughout the upgrade: refused while no process listens (its port
        // is not handed over), never 503, which would take the node out of a balancer.
        let ready = "http://127.0.0.1:\(metricsPort)/ready"
        let asking = Atomic(true)
        let answers = Mutex<[String]>([])
        let asker = Thread {
            while asking.load(ordering: .relaxed) {
                let code = (try? curl(["-o", "/dev/null", "-w", "%{http_code}", ready])) ?? "curl failed"
                answers.withLock { $0.append(code) }
            }
        }
        asker.start()
        defer { asking.store(false, ordering: .relaxed) }

        // A new binary installed the usual way: a new file renamed over the old one.
        try FileManager.default.copyItem(atPath: Products.path("baton"), toPath: executable + ".new")
        _ = rename(executable + ".new", executable)
        let upgrade = try batonctl(["upgrade"], baton)
        #expect(upgrade.status == 0, "\(upgrade.output)\n\(baton.log)")
        // Until the new binary's endpoint has answered at least once.
        let askedBefore = answers.withLock { $0.count }
        _ = try baton.waitForStatus("/ready answered after the upgrade") { _ in
            answers.withLock { $0.dropFirst(askedBefore).contains("200") }
        }
        asking.store(false, ordering: .relaxed)
        while !asker.isFinished { usleep(10_000) }
        let codes = answers.withLock { $0 }
        #expect(!codes.contains("503"), "/ready during the upgrade: \(codes)")
        print("/ready during the upgrade: \(codes.count) answers, \(codes.filter { $0 == "000" }.count) of them refused")
        let after = try baton.status()
        #expect(after.pid == before.pid && baton.process.isRunning)
        #expect(after.upgrades == 1)
        #expect(after.generations.map(\.number) == [1])
        #expect(after.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid), "the same workers serve on")
        #expect(after.listeners.map(\.sockets.count) == [3])
        let executed = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(after.pid)/exe")) ?? ""
        #expect(executed == executable, "the process runs the new file, not the deleted one: \(executed)")
        // The new binary took over the steering program and its map: every socket stays
        // in rotation and its counter, read through the handed-over map, goes on growing.
        let sockets = after.listeners.flatMap(\.sockets)
        #expect(sockets.allSatisfy { $0.inRotation == true && $0.steered != nil }, "\(sockets)")
        let steered = sockets.compactMap(\.steered).reduce(0, +)
        _ = try baton.waitForStatus("steering goes on after the upgrade") {
            $0.listeners.flatMap(\.sockets).compactMap(\.steered).reduce(0, +) > steered + 10
        }

        // Business as usual afterwards: a reload, then a stop that drains the workers it inherited.
        #expect(try baton.reload().ok)
        let report = load.stop()
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 10, "the load must actually have run")
        print("upgrade under load: \(report.succeeded) requests answered, \(report.totalFailures) failed")
        // Generation 1 drains after generation 2 took over; wait until its inherited workers are reaped.
        try baton.waitUntilServing(generation: 2)
        let settled = try baton.waitForStatus("generation 1 gone") { $0.generations.map(\.number) == [2] }
        #expect(settled.generations[0].role == .serving)
        #expect(baton.stop() == 0)
        #expect(baton.log.contains("generation 1 has exited"), "the inherited workers were reaped: \(baton.log)")
        #expect(!baton.log.contains("the rotation could not be changed"), "\(baton.log)")
    }

    @Test func upgradeWithoutAnExecutableIsRefusedAndChangesNothing() throws {
        let scratch = ScratchDirectory()
        let executable = try installBaton(in: scratch)
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch, executable: executable)
        let before = try baton.waitUntilServing()
        try FileManager.default.removeItem(atPath: executable)
        let upgrade = try batonctl(["upgrade"], baton)
        #expect(upgrade.status != 0)
        #expect(upgrade.output.contains("upgrade refused: \(executable) is not an executable file"), "\(upgrade.output)")
        let after = try baton.status()
        #expect(after.upgrades == 0)
        #expect(after.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid))
        #expect(baton.stop() == 0)
    }

    /// Replaces the installed baton with `text` (a script), the usual way: a new file
    /// renamed over the old one.
    func install(script text: String, at executable: String) throws {
        try text.write(toFile: executable + ".new", atomically: false, encoding: .utf8)
        chmod(executable + ".new", 0o755)
        _ = rename(executable + ".new", executable)
    }

    /// An upgrade to a binary that exits at once, or hangs, fails with what that binary
    /// did, and the old Baton serves on with the same workers and sockets, losing no
    /// request; a good binary installed afterwards upgrades as usual (issue 26, defect 5).
    @Test func anUpgradeToABinaryThatFailsKeepsTheServiceServing() throws {
        let scratch = ScratchDirectory()
        let executable = try installBaton(in: scratch)
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--drain-timeout", "10s",
                "--", Products.path("baton-demo"),
            ], in: scratch, executable: executable)
        defer { baton.stop() }
        let before = try baton.waitUntilServing()
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 8
        let load = LoadGenerator(configuration)
        load.start()

        try install(script: "#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n", at: executable)
        let failed = try batonctl(["upgrade"], baton)
        #expect(failed.status != 0)
        #expect(failed.output.contains("exited with status 1"), "\(failed.output)")
        #expect(failed.output.contains("this build is broken"), "the new binary's last words are shown: \(failed.output)")
        let afterFailure = try baton.status()
        #expect(afterFailure.pid == before.pid && baton.process.isRunning)
        #expect(afterFailure.upgrades == 0)
        #expect(afterFailure.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid), "the same workers serve on")

        // One that hangs is killed at the deadline; its sleep has an argument of its own.
        let hang = "1000.\(getpid())"
        try install(script: "#!/bin/sh\nexec sleep \(hang)\n", at: executable)
        let hung = try batonctl(["upgrade"], baton)
        #expect(hung.status != 0)
        #expect(hung.output.contains("did not prove itself within"), "\(hung.output)")
        #expect(try baton.status().upgrades == 0)
        let sleepers = ProbeProcessTests.waitUntilGone(hang)
        #expect(sleepers.isEmpty, "the hanging binary was left running")
        sleepers.forEach { kill($0, SIGKILL) }

        try FileManager.default.copyItem(atPath: Products.path("baton"), toPath: executable + ".new")
        _ = rename(executable + ".new", executable)
        let upgrade = try batonctl(["upgrade"], baton)
        #expect(upgrade.status == 0, "\(upgrade.output)\n\(baton.log)")
        let after = try baton.status()
        #expect(after.pid == before.pid && after.upgrades == 1)
        #expect(after.generations[0].workers.map(\.pid) == before.generations[0].workers.map(\.pid))
        let report = load.stop()
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 10, "the load must actually have run")
        print("failed upgrades under load: \(report.succeeded) requests answered, \(report.totalFailures) failed")
        #expect(baton.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: baton.controlSocket), "the control socket is removed at the exit")
    }
}
