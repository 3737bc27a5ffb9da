import Foundation
import Synchronization

/// Closed-loop HTTP load: `clients` threads, each sending its next request as soon as
/// the last one is answered, classifying every failure. Start it, do something to the
/// server (reload it), stop it, read the report.
public final class LoadGenerator: Sendable {
    public let configuration: LoadConfiguration
    private let clients: [ClientRecord]
    private let running = Atomic<Bool>(false)
    private let finished = Mutex<[DispatchSemaphore]>([])
    private let events = Mutex<[LoadReport.Event]>([])
    private let started = Mutex<ContinuousClock.Instant?>(nil)

    public init(_ configuration: LoadConfiguration) {
        self.configuration = configuration
        clients = (0..<max(configuration.clients, 1)).map { _ in ClientRecord() }
    }

    /// Starts the clients and returns at once.
    public func start() {
        let origin = ContinuousClock.now
        started.withLock { $0 = origin }
        running.store(true, ordering: .sequentiallyConsistent)
        for (index, record) in clients.enumerated() {
            let done = DispatchSemaphore(value: 0)
            finished.withLock { $0.append(done) }
            let thread = Thread { [self] in
                configuration.prepareThread?()
                runClient(index, record: record, origin: origin)
                done.signal()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Stops every client (each finishes or abandons its request within the request
    /// timeout), waits for them, and reports.
    public func stop() -> LoadReport {
        running.store(false, ordering: .sequentiallyConsistent)
        for done in finished.withLock({ $0 }) {
            done.wait()
        }
        return snapshot
    }

    /// Records a named moment, such as `reload-start`, for windows in the report.
    public func markEvent(_ name: String) {
        guard let origin = started.withLock({ $0 }) else { return }
        let offset = ContinuousClock.now - origin
        events.withLock { $0.append(.init(name: name, at: offset.seconds)) }
    }

    /// How many requests were answered so far: cheap, unlike ``snapshot``, for waiting on
    /// the load's progress.
    public var answered: Int {
        clients.reduce(0) { total, client in total + client.state.withLock { $0.samples.count } }
    }

    /// The counts so far.
    public var snapshot: LoadReport {
        let origin = started.withLock { $0 } ?? .now
        return LoadReport(
            clients: clients.map { $0.state.withLock { $0 } }, events: events.withLock { $0 },
            elapsed: (ContinuousClock.now - origin).seconds, configuration: configuration)
    }

    private func runClient(_ index: Int, record: ClientRecord, origin: ContinuousClock.Instant) {
        let request = Array(
            "GET \(configuration.path) HTTP/1.1\r\nHost: baton-load\r\n\(configuration.mode == .newConnection ? "Connection: close\r\n" : "")\r\n".utf8)
        var connection: HTTPConnection?
        var sequence = 0
        // Open loop: this client's share of the rate, its first request staggered.
        let interval = configuration.rate.map { Duration.seconds(Double(configuration.clients) / max($0, 0.001)) }
        var scheduled = origin + (interval ?? .zero) * (Double(index) / Double(max(configuration.clients, 1)))
        while running.load(ordering: .relaxed) && ContinuousClock.now - origin < configuration.maximumDuration {
            sequence += 1
            var begin = ContinuousClock.now
            if let interval {
                if scheduled > begin {
                    sleep(until: scheduled)
                }
                begin = scheduled
                scheduled += interval
            }
            var reused = false
            do {
                if connection == nil {
                    connection = try HTTPConnection.connect(configuration.target, timeout: configuration.requestTimeout)
                } else {
                    reused = true
                }
                let response = try connection!.exchange(request, expectedHeader: configuration.expectedHeader)
                let end = ContinuousClock.now
                record.state.withLock { $0.succeeded(at: end - origin, latency: end - begin, response: response) }
                if configuration.mode == .newConnection || response.closes {
                    connection?.close()
                    connection = nil
                }
            } catch {
                connection?.close()
                connection = nil
                let kind: FailureKind
                switch error {
                case .refused: kind = .refused
                case .reset, .closed: kind = reused ? .lostOnReusedConnection : (error == .reset ? .reset : .shortResponse)
                case .short: kind = .shortResponse
                case .timedOut: kind = .timedOut
                case .wrong: kind = .wrongResponse
                case .other: kind = .other
                }
                let at = ContinuousClock.now - origin
                var detail = "\(kind.rawValue) at \(String(format: "%.3f", at.seconds))s: client \(index) request \(sequence)"
                if reused { detail += " on a reused connection" }
                if case .wrong(let why) = error { detail += " (\(why))" }
                if case .other(let why) = error { detail += " (\(why))" }
                record.state.withLock { $0.failed(kind, at: at, detail: detail) }
                if kind == .refused || kind == .other {
                    // Don't spin when nothing listens.
                    usleep(1000)
                }
            }
        }
        connection?.close()
    }
}

/// Blocks the calling thread until `deadline`.
public func sleep(until deadline: ContinuousClock.Instant) {
    let remaining = deadline - .now
    guard remaining > .zero else { return }
    Thread.sleep(forTimeInterval: remaining.seconds)
}

/// One client's results; only its own thread writes them.
final class ClientRecord: Sendable {
    let state = Mutex(ClientState())
}

struct ClientState: Sendable {
    /// (completion time since start, latency), both in microseconds.
    var samples: [(at: UInt32, latency: UInt32)] = []
    var failures: [(kind: FailureKind, at: UInt32)] = []
    var failureDetails: [String] = []
    var responders: Set<String> = []
    var answersByGeneration: [String: Int] = [:]
    var answersBySlot: [String: Int] = [:]

    mutating func succeeded(at: Duration, latency: Duration, response: HTTPConnection.Response) {
        samples.append((at.microseconds, latency.microseconds))
        if let responder = response.responder { responders.insert(responder) }
        if let generation = response.generation { answersByGeneration[generation, default: 0] += 1 }
        if let slot = response.slot { answersBySlot[slot, default: 0] += 1 }
    }

    mutating func failed(_ kind: FailureKind, at: Duration, detail: String) {
        failures.append((kind, at.microseconds))
        if failureDetails.count < 20 { failureDetails.append(detail) }
    }
}

extension Duration {
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    public var milliseconds: Double { seconds * 1000 }

    var microseconds: UInt32 {
        UInt32(clamping: components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000)
    }
}
