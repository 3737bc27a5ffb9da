import BatonCore
import Foundation
import Testing

/// Reasons a person can act on: a failed worker's own last words on standard error go
/// into the reason Baton gives, wherever it gives it.
@Suite struct FailureReasonTests {
    /// A worker that exits with `status` after writing `lines` on standard error when
    /// `flag` exists, and otherwise serves as the demo server does.
    static func worker(failingWith status: Int, lines: [String], when flag: String, slot: Int? = nil) -> [String] {
        let slotTest = slot.map { "[ \"$BATON_SLOT\" = \($0) ] && " } ?? ""
        let writes = lines.map { "echo '\($0)' >&2; " }.joined()
        return ["/bin/sh", "-c", "if \(slotTest)[ -e \(flag) ]; then \(writes)exit \(status); fi; exec \(Products.path("baton-demo"))"]
    }

    @Test func aRollbackQuotesTheFailingWorkersLastOutput() throws {
        let scratch = ScratchDirectory()
        let flag = "\(scratch.path)/broken"
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--output", "prefix", "--",
            ] + Self.worker(failingWith: 3, lines: ["starting", "boom: missing DATABASE_URL"], when: flag),
            in: scratch)
        try baton.waitUntilServing()
        FileManager.default.createFile(atPath: flag, contents: nil)

        let reply = try baton.reload()
        let why = "worker g2/s0 exited with status 3 before it was ready; its last output: starting | boom: missing DATABASE_URL"
        #expect(!reply.ok)
        #expect(reply.error?.contains(why) == true, "reload --wait says why: \(reply)")
        let status = try baton.status()
        #expect(status.reloads.last?.result == .rolledBack)
        #expect(status.reloads.last?.reason?.contains(why) == true, "status says why: \(String(describing: status.reloads.last))")
        #expect(StatusFormatter.json(status).contains("boom: missing DATABASE_URL"))
        #expect(
            baton.log.split(separator: "\n").contains { $0.contains("reload: rolled back") && $0.contains("boom: missing DATABASE_URL") },
            "the log's reload line says why:\n\(baton.log)")
        #expect(baton.stop() == 0)
    }

    @Test func aCrashLoopingSlotSaysHowItEndedAndWhenItStartsAgain() throws {
        let scratch = ScratchDirectory()
        let flag = "\(scratch.path)/crash"
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(freePort())", "--workers", "2", "--output", "prefix", "--",
            ] + Self.worker(failingWith: 4, lines: ["boom: lost the database"], when: flag, slot: 1),
            in: scratch)
        let serving = try baton.waitUntilServing()
        FileManager.default.createFile(atPath: flag, contents: nil)
        let victim = try #require(serving.generations.last?.workers.first { $0.slot == 1 }?.pid)
        kill(-victim, SIGKILL)

        let status = try baton.waitForStatus("slot 1 waiting to restart after its exit with status 4") { status in
            status.generations.last?.slotRestarts?.contains { $0.slot == 1 && $0.lastExit?.contains("status 4") == true } == true
        }
        let restart = try #require(status.generations.last?.slotRestarts?.first { $0.slot == 1 })
        #expect(restart.lastExit == "exited with status 4; its last output: boom: lost the database")
        #expect(restart.restarts >= 1, "the slot restarted at least once after the kill")
        #expect(restart.crashes >= 2, "the kill and the failed restart are crashes in a row")
        #expect(restart.nextStartIn != nil, "status says when the slot starts again")
        let table = StatusFormatter.table(status)
        #expect(table.contains("exited with status 4; its last output: boom: lost the database; next start in"), "\(table)")
        #expect(baton.stop() == 0)
    }
}
