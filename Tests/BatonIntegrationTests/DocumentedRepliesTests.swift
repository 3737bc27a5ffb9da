import BatonCore
import Foundation
import Testing

/// The replies Docs/control-protocol.md quotes are the ones Baton sends: each quoted
/// block is compared with the lines a real Baton answers ("..." stands for lines left out).
@Suite struct DocumentedRepliesTests {
    static let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Docs/control-protocol.md").standardized.path

    /// The lines of the first code block after `marker` in the document.
    static func quotedBlock(after marker: String) throws -> [String] {
        let text = try String(contentsOfFile: document, encoding: .utf8)
        guard let start = text.range(of: marker) else { throw TestFailure("Docs/control-protocol.md no longer says \(marker)") }
        let lines = text[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let open = lines.firstIndex(where: { $0.hasPrefix("```") }),
            let close = lines[(open + 1)...].firstIndex(where: { $0.hasPrefix("```") })
        else { throw TestFailure("no code block after \(marker)") }
        return Array(lines[(open + 1)..<close])
    }

    /// Whether `answered` is what `quoted` shows: the same first and last lines, and every
    /// quoted line in its order, "..." standing for any lines.
    static func matches(_ quoted: [String], _ answered: [String]) -> Bool {
        guard quoted.first == answered.first, quoted.last == answered.last else { return false }
        var rest = answered[...]
        for line in quoted where line != "..." {
            guard let index = rest.firstIndex(of: line) else { return false }
            rest = rest[(index + 1)...]
        }
        return true
    }

    /// Every line of the answer to `request`, as the control socket sends it.
    static func answer(_ request: ControlRequest, from baton: BatonUnderTest) throws -> [String] {
        var lines: [String] = []
        _ = try ControlClient.send(request, to: baton.controlSocket) { lines.append($0.encodedLine()) }
        return lines.map { $0.hasSuffix("\n") ? String($0.dropLast()) : $0 }
    }

    @Test func aReloadWithWaitAnswersAsQuoted() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write("baton.toml", serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: 4))
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        try baton.waitUntilServing()
        #expect(try baton.reload().generation == 2)
        // At most two generations are alive: the next reload would wait for the first to go.
        _ = try baton.waitForStatus("generation 1 gone") { $0.generations.map(\.number) == [2] }

        let quoted = try Self.quotedBlock(after: "A reload with `wait` prints lines such as:")
        let answered = try Self.answer(ControlRequest(command: .reload, wait: true), from: baton)
        #expect(
            Self.matches(quoted, answered),
            "Docs/control-protocol.md quotes:\n\(quoted.joined(separator: "\n"))\nBaton answered:\n\(answered.joined(separator: "\n"))")

        // A worker that never says it is ready.
        _ = try baton.waitForStatus("generation 2 gone") { $0.generations.map(\.number) == [3] }
        try scratch.write("baton.toml", serviceConfiguration(port: port, command: ["/bin/sleep", "30"], workers: 1, readyTimeout: "1s"))
        let rollback = try Self.quotedBlock(after: "and, when it rolls back:")
        let rolledBack = try Self.answer(ControlRequest(command: .reload, wait: true), from: baton)
        #expect(
            Self.matches(rollback, rolledBack),
            "Docs/control-protocol.md quotes:\n\(rollback.joined(separator: "\n"))\nBaton answered:\n\(rolledBack.joined(separator: "\n"))")
        #expect(baton.stop() == 0)
    }

    @Test func anUnknownCommandIsAnsweredAsQuoted() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--listen", "http=tcp://127.0.0.1:\(freePort())", "--", Products.path("baton-demo")], in: scratch)
        try baton.waitUntilServing()
        let quoted = try Self.quotedBlock(after: "what was wrong, and changes nothing:")
        let reply = try run(
            "/bin/sh",
            [
                "-c",
                "printf '%s\\n' '{\"command\":\"relaod\"}' | python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('\(baton.controlSocket)'); s.sendall(sys.stdin.buffer.read()); print(s.makefile().readline(), end='')\"",
            ])
        #expect(quoted.last == reply.output.trimmingCharacters(in: .newlines), "quoted:\n\(quoted.joined(separator: "\n"))\nanswered: \(reply.output)")
        #expect(baton.stop() == 0)
    }
}

/// The configuration file the README shows is one `baton --check` accepts.
@Suite struct ReadmeExampleTests {
    @Test func theReadmesConfigurationIsValid() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md").standardized.path
        let text = try String(contentsOfFile: readme, encoding: .utf8)
        guard let start = text.range(of: "```toml\n"), let end = text.range(of: "```", range: start.upperBound..<text.endIndex) else {
            throw TestFailure("README.md no longer shows a configuration file")
        }
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", String(text[start.upperBound..<end.lowerBound]))
        let check = try run(Products.path("baton"), ["--check", "--config", "\(scratch.path)/baton.toml"])
        #expect(check.status == 0, "baton --check: \(check.output)")
    }
}
