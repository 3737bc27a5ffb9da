import BatonCore
import Foundation
import Synchronization
import Testing

/// UDP listeners are steered like TCP ones: once a new generation serves, every new
/// datagram goes to its sockets, and the replaced generation gets its drain signal only
/// once its own sockets hold no datagram, so a datagram service loses nothing across
/// reloads even with a worker that stops reading at once on its drain signal.
@Suite(.serialized) struct DatagramReloadTests {
    /// An echo worker in Python: answers each datagram with itself and its generation;
    /// on SIGTERM it stops at its next idle moment, without reading what is queued.
    static let echoWorker = """
        import os, signal, socket
        sock = socket.socket(fileno=3)
        generation = os.environ.get("BATON_GENERATION", "?").encode()
        draining = False
        def drain(*_):
            global draining
            draining = True
        signal.signal(signal.SIGTERM, drain)
        address = os.environ.get("NOTIFY_SOCKET")
        if address:
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.connect("\\0" + address[1:] if address.startswith("@") else address)
            notify.send(b"READY=1")
            notify.close()
        sock.settimeout(0.05)
        while not draining:
            try:
                data, peer = sock.recvfrom(2048)
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            sock.sendto(data + b" g" + generation, peer)
        """

    /// What the client saw: datagrams sent, answered, and the generations that answered.
    struct Exchange: Sendable {
        var sent = 0
        var answered = 0
        var unanswered: [Int] = []
        var generations: Set<String> = []
    }

    /// Sends numbered datagrams one at a time, each waiting for its answer, until
    /// `stop` is set. A datagram unanswered within a long timeout counts as lost.
    static func exchange(port: Int, until stop: borrowing Atomic<Bool>) -> Exchange {
        var exchange = Exchange()
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return exchange }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return exchange }
        // Generous: an answer is late only on a very busy machine; a lost one never comes.
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !stop.load(ordering: .relaxed) {
            let number = exchange.sent
            let message = Array("datagram \(number)".utf8)
            guard send(fd, message, message.count, 0) == message.count else { break }
            exchange.sent += 1
            // Answers to earlier datagrams that came late are skipped; this one's is awaited.
            var answered = false
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                guard count > 0 else { break }
                let answer = String(decoding: buffer[0..<count], as: UTF8.self)
                let parts = answer.split(separator: " ")
                if parts.count == 3, parts[1] == "\(number)" {
                    exchange.generations.insert(String(parts[2]))
                    answered = true
                    break
                }
            }
            if answered { exchange.answered += 1 } else { exchange.unanswered.append(number) }
            usleep(2000)
        }
        return exchange
    }

    @Test func everyDatagramIsAnsweredAcrossReloads() throws {
        let scratch = ScratchDirectory()
        try scratch.write("echo.py", Self.echoWorker)
        let (baton, port) = try batonOnUDP(
            nil, listener: "echo", server: "\(scratch.path)/echo.py", drainTimeout: "10s", in: scratch, tested: "UDP steering")
        let stop = Atomic<Bool>(false)
        let result = Mutex<Exchange?>(nil)
        let client = Thread {
            let exchange = Self.exchange(port: port, until: stop)
            result.withLock { $0 = exchange }
        }
        client.start()
        let reloads = 10
        var replies: [ControlReply] = []
        for _ in 1...reloads {
            replies.append(try baton.reload())
        }
        _ = try baton.waitForStatus("the last replaced generation gone") { $0.generations.count == 1 }
        stop.store(true, ordering: .relaxed)
        var exchange: Exchange?
        while exchange == nil {
            usleep(10_000)
            exchange = result.withLock { $0 }
        }
        let seen = try #require(exchange)
        #expect(replies.allSatisfy { $0.ok }, "\(replies.filter { !$0.ok })")
        #expect(seen.unanswered.isEmpty, "lost datagrams \(seen.unanswered) of \(seen.sent)")
        #expect(seen.answered > reloads, "the client must actually have run")
        #expect(seen.generations.count > 1, "several generations must have answered: \(seen.generations)")
        print("UDP echo across \(reloads) reloads: \(seen.answered) of \(seen.sent) datagrams answered, by generations \(seen.generations.sorted())")
        #expect(baton.stop() == 0)
    }
}
