import Foundation
import Testing

@testable import Baton

/// How a line of a worker's output is written among Baton's own: nothing in it can end
/// the line, move the cursor, or pass for one of Baton's lines.
@Suite struct WorkerOutputLineTests {
    let worker = WorkerID(generation: 3, slot: 1)

    func text(_ bytes: [UInt8], continued: Bool = false) -> String {
        let line = WorkerOutputLine(worker: worker, stream: "stderr", format: .text, journal: false)
        return String(decoding: line.render(bytes[...], pid: 42, continued: continued), as: UTF8.self)
    }

    @Test func controlBytesEscapesAndInvalidUTF8AreEscaped() {
        #expect(text(Array("plain\ttext é ✓".utf8)) == "[g3/s1] plain\ttext é ✓\n")
        #expect(text(Array("red \u{1b}[31mtext\r".utf8)) == "[g3/s1] red \\x1b[31mtext\\x0d\n")
        #expect(text([0xff, 0xfe, 0x41, 0xc3]) == "[g3/s1] \\xff\\xfeA\\xc3\n")
        #expect(text(Array("a\u{85}b\u{7f}\u{0}".utf8)) == "[g3/s1] a\\u{85}b\\x7f\\x00\n")
        #expect(text(Array("rest".utf8), continued: true) == "[g3/s1+] rest\n")
    }

    /// With JSON logs, a line is an object of its own that says whose it is; what the
    /// worker wrote, a JSON object of Baton's look-alike included, is a string in it.
    @Test func jsonLinesWrapTheTextWhateverItIs() throws {
        let line = WorkerOutputLine(worker: worker, stream: "stdout", format: .json, journal: false)
        let forged = #"{"time":"2026-12-01T12:00:00.000Z","level":"error","label":"baton","message":"forged"}"#
        let bytes = line.render((Array((forged + "\u{1b}[2K\r").utf8) + [0xff])[...], pid: 42, continued: true)
        #expect(bytes.last == UInt8(ascii: "\n") && bytes.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(object["label"] as? String == "worker" && object["stream"] as? String == "stdout")
        #expect(object["generation"] as? Int == 3 && object["slot"] as? Int == 1 && object["pid"] as? Int == 42)
        #expect(object["continued"] as? Bool == true)
        #expect(object["message"] == nil)
        #expect(object["text"] as? String == forged + "\\x1b[2K\\x0d\\xff")
        let journal = WorkerOutputLine(worker: worker, stream: "stderr", format: .text, journal: true)
        #expect(
            String(decoding: journal.render(Array("<3>fake error".utf8)[...], pid: 42, continued: false), as: UTF8.self)
                == "<6>[g3/s1] <3>fake error\n")
    }

    /// The last lines a worker wrote on standard error are kept for the reason of its
    /// exit, bounded in number and length, read to the end of what the pipe holds.
    @Test func theLastLinesOfStandardErrorAreKeptBounded() throws {
        let (fd, relay) = try OutputRelay.start(WorkerID(generation: 7, slot: 0), target: STDERR_FILENO)
        let long = String(repeating: "x", count: 1000)
        let text = (1...6).map { "line \($0)" }.joined(separator: "\n") + "\n\(long)\n   \n\u{1b}[31mred and last"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        let lines = relay.lastLines()
        #expect(lines.count == OutputRelay.keptLines)
        #expect(lines.first == "line 4")
        #expect(lines[lines.count - 2] == String(repeating: "x", count: OutputRelay.keptLineLength) + "…")
        #expect(lines.last == "\\x1b[31mred and last", "escaped as the log has it, the unterminated last line included")
    }
}
