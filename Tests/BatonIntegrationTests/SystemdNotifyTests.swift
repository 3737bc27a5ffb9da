import BatonCore
import Foundation
import Synchronization
import Testing

/// What `baton` tells systemd as a `Type=notify` service, read from a socket of the
/// test's own given as `NOTIFY_SOCKET`, as systemd would.
@Suite(.serialized) struct SystemdNotifyTests {
    /// A datagram socket at a path, read without blocking.
    final class NotifyReceiver: Sendable {
        let path: String
        private let fd: Int32

        init(path: String) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { bytes in
                path.utf8CString.withUnsafeBytes { bytes.copyMemory(from: $0) }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else { throw TestFailure("bind \(path): errno \(errno)") }
        }

        /// Every message waiting now.
        func receive() -> [String] {
            var messages: [String] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while case let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)), count > 0 {
                messages.append(String(decoding: buffer[0..<count], as: UTF8.self))
            }
            return messages
        }

        deinit { close(fd) }
    }

    @Test func readyReloadingStatusStoppingAndWatchdog() throws {
        let scratch = ScratchDirectory()
        let receiver = try NotifyReceiver(path: "\(scratch.path)/notify.sock")
        let port = freePort()
        func configuration(_ command: [String]) -> String {
            serviceConfiguration(port: port, command: command, workers: 2)
        }
        try scratch.write("baton.toml", configuration([Products.path("baton-demo")]))
        let baton = try BatonUnderTest(
            ["--config", "baton.toml"], in: scratch,
            environment: ["NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "2000000"])
        // Read all along, as systemd does: a queue nobody reads loses what Baton sends.
        let collected = Mutex<[String]>([])
        let reading = Atomic<Bool>(true)
        let reader = Thread {
            while reading.load(ordering: .relaxed) {
                let received = receiver.receive()
                if !received.isEmpty { collected.withLock { $0 += received } }
                usleep(2_000)
            }
        }
        reader.start()
        let status = try baton.waitUntilServing()

        // A reload that takes over, then one that rolls back.
        #expect(try baton.reload().ok)
        try scratch.write("baton.toml", configuration([Products.path("baton-demo"), "--exit-at-start", "3"]))
        #expect(try baton.reload().ok == false)
        // The watchdog keeps coming while Baton runs (bounded wait).
        for _ in 0..<200 where collected.withLock({ $0 }).filter({ $0.contains("WATCHDOG=1") }).count < 3 {
            usleep(50_000)
        }
        #expect(baton.stop() == 0)
        usleep(50_000)
        reading.store(false, ordering: .relaxed)
        let messages = collected.withLock { $0 } + receiver.receive()

        func firstIndex(_ field: String, after start: Int = 0) -> Int? {
            messages.indices.first { $0 >= start && messages[$0].split(separator: "\n").contains { $0 == field } }
        }
        let ready = try #require(firstIndex("READY=1"), "READY=1 once the first generation serves: \(messages)")
        let reloads = messages.indices.filter { messages[$0].contains("RELOADING=1") }
        #expect(reloads.count == 2, "RELOADING=1 for each reload: \(messages)")
        #expect(reloads.allSatisfy { $0 > ready })
        for reload in reloads {
            #expect(messages[reload].contains(/MONOTONIC_USEC=\d+/), "RELOADING=1 carries MONOTONIC_USEC")
            #expect(firstIndex("READY=1", after: reload + 1) != nil, "READY=1 after each reload, whether it took over or rolled back")
        }
        #expect(
            messages.contains { $0.contains("STATUS=generation 2: 2/2 ready") && $0.contains("last reload rolled-back") },
            "STATUS= sums up what serves and how the last reload went: \(messages)")
        let stopping = try #require(firstIndex("STOPPING=1"))
        #expect(stopping > reloads.max() ?? 0)
        #expect(messages.filter { $0.contains("WATCHDOG=1") }.count >= 3, "WATCHDOG=1 while WATCHDOG_USEC is set")

        // None of this reaches a worker: each has a notify socket of its own.
        for worker in status.generations.flatMap(\.workers) {
            let environment = (try? String(contentsOfFile: "/proc/\(worker.pid ?? 0)/environ", encoding: .utf8)) ?? ""
            #expect(!environment.contains(receiver.path) && !environment.contains("WATCHDOG_USEC"))
        }
    }
}
