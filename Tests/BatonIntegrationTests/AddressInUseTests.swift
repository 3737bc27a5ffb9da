import BatonCore
import Foundation
import Testing

/// A second Baton on an address one already serves refuses to start, naming the
/// address, unless told to share it; the first serves on.
@Suite(.serialized) struct AddressInUseTests {
    static func answers(port: Int) -> Bool {
        guard let fd = try? HTTPProbe.connect(port: port) else { return false }
        defer { close(fd) }
        let request = "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        guard write(fd, request, request.utf8.count) == request.utf8.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &buffer, buffer.count)
        return count > 0 && String(decoding: buffer.prefix(count), as: UTF8.self).hasPrefix("HTTP/1.1 200")
    }

    @Test func aSecondBatonOnTheSameAddressRefusesToStart() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        let first = try BatonUnderTest(
            ["--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--", Products.path("baton-demo")],
            in: scratch)
        defer { first.stop() }
        try first.waitUntilServing()

        let secondScratch = ScratchDirectory()
        let second = try BatonUnderTest(["--listen", "http=tcp://0.0.0.0:\(port)", "--", Products.path("baton-demo")], in: secondScratch)
        defer { second.stop() }
        let code = second.waitForExit()
        #expect(code != 0 && code != -1, "the second Baton must exit, failing, by itself:\n\(second.log)")
        #expect(
            second.log.contains("tcp://0.0.0.0:\(port): already served by another process (pid \(first.process.processIdentifier)"),
            "\(second.log)")
        #expect(try first.status().phase == .running)
        #expect(Self.answers(port: port), "the first Baton must serve on")

        // Told to share, it starts beside the first.
        try secondScratch.write(
            "share.toml",
            """
            [[listener]]
            name = "http"
            address = "tcp://127.0.0.1:\(port)"
            address_in_use = "share"

            [workers]
            command = ["\(Products.path("baton-demo"))"]
            """)
        let sharing = try BatonUnderTest(["--config", "\(secondScratch.path)/share.toml"], in: secondScratch)
        defer { sharing.stop() }
        try sharing.waitUntilServing()
        #expect(Self.answers(port: port))
        #expect(sharing.stop() == 0)
        #expect(first.stop() == 0)
    }
}
