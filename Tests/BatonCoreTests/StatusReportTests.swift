import BatonCore
import Foundation
import Testing

/// The status on the wire: the typed values must keep the words Docs/control-protocol.md
/// documents, which scripts and dashboards match on.
@Suite struct StatusReportTests {
    @Test func phasesRolesStatesAndResultsKeepTheirDocumentedWords() {
        #expect(StatusReport.Phase.allCases.map(\.rawValue) == ["starting", "running", "reloading", "stopping"])
        #expect(StatusReport.GenerationStatus.Role.allCases.map(\.rawValue) == ["starting", "serving", "canary", "leaving", "draining", "rolling-back"])
        #expect(StatusReport.WorkerStatus.State.allCases.map(\.rawValue) == ["starting", "ready", "draining", "stopping", "killed"])
        #expect(StatusReport.ReloadRecord.Outcome.allCases.map(\.rawValue) == ["running", "took-over", "rolled-back", "canceled", "failed"])
        #expect(ReusePortMode.allCases.map(\.rawValue) == ["per-worker", "shared"])
    }

    @Test func encodesTheRawWordsOnTheWire() {
        let status = StatusReport(
            pid: 7, phase: .reloading, configuration: "command line", command: ["./server"],
            generations: [
                .init(
                    number: 1, role: .rollingBack,
                    workers: [.init(slot: 0, restarts: 2, pid: 11, state: .stopping, status: nil, uptime: nil)],
                    restartingSlots: [1], crashLoopingSlots: [])
            ],
            listeners: [.init(name: "http", address: "tcp://127.0.0.1:8080", reusePort: .perWorker, sockets: [.init(slot: nil)])],
            reloads: [.init(started: 1.5, finished: 2.5, result: .tookOver, generation: 1)],
            pendingReloads: 0)
        let line = ControlReply(ok: true, final: true, status: status).encodedLine()
        #expect(
            line == #"""
                {"final":true,"ok":true,"status":{"command":["./server"],"configuration":"command line","generations":[{"crashLoopingSlots":[],"number":1,"restartingSlots":[1],"role":"rolling-back","workers":[{"pid":11,"restarts":2,"slot":0,"state":"stopping"}]}],"listeners":[{"address":"tcp://127.0.0.1:8080","name":"http","reusePort":"per-worker","sockets":[{}]}],"pendingReloads":0,"phase":"reloading","pid":7,"reloads":[{"finished":2.5,"generation":1,"result":"took-over","started":1.5}]}}

                """#)
    }

    @Test func decodesTheDocumentedExample() throws {
        let status = try JSONDecoder().decode(StatusReport.self, from: Data(try Self.documentedExample().utf8))
        #expect(status.phase == .running)
        #expect(status.generations.map(\.role) == [.draining, .serving])
        #expect(status.generations.flatMap(\.workers).map(\.state) == [.stopping, .ready])
        #expect(status.listeners.map(\.reusePort) == [.perWorker])
        #expect(status.reloads.map(\.result) == [.tookOver])
        #expect(status.generations[0].workers[0].status == "draining 3 connections")
    }

    @Test func anUnknownWordIsAnError() {
        let line = #"{"command":[],"configuration":"","generations":[],"listeners":[],"pendingReloads":0,"phase":"resting","pid":1,"reloads":[]}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(StatusReport.self, from: Data(line.utf8)) }
    }

    /// The first JSON block of Docs/control-protocol.md's "Status" section.
    static func documentedExample() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("Docs/control-protocol.md"), encoding: .utf8)
        let section = try #require(text.range(of: "## Status"))
        let start = try #require(text.range(of: "```json\n", range: section.upperBound..<text.endIndex))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        return String(text[start.upperBound..<end.lowerBound])
    }
}
