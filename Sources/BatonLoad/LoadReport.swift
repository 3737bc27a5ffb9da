import Histogram

/// What a load run saw: counts, every failure classified, latency overall and over time.
public struct LoadReport: Sendable, Codable {
    public struct Event: Sendable, Codable {
        public var name: String
        /// Seconds since the load started.
        public var at: Double
    }

    public struct LatencySummary: Sendable, Codable, Equatable {
        public var count: Int
        /// Microseconds.
        public var p50: UInt64
        public var p90: UInt64
        public var p99: UInt64
        public var p999: UInt64
        public var max: UInt64
    }

    /// One 100 ms slice of the run.
    public struct Slice: Sendable, Codable {
        public var at: Double
        public var requests: Int
        public var failures: Int
        public var p99: UInt64
    }

    public var mode: ConnectionMode
    public var clients: Int
    public var target: String
    /// Seconds.
    public var elapsed: Double
    public var requests: Int
    public var succeeded: Int
    public var failures: [FailureKind: Int]
    /// The first failures, for people.
    public var failureSamples: [String]
    /// Distinct `X-Pid` values that answered: several generations show as several pids.
    public var distinctResponders: Int
    /// Answers by the `X-Generation` and the `X-Slot` the server sent, where it sent them.
    public var answersByGeneration: [String: Int]
    public var answersBySlot: [String: Int]
    public var latency: LatencySummary
    public var timeline: [Slice]
    public var events: [Event]

    public var totalFailures: Int {
        failures.values.reduce(0, +)
    }

    /// Requests per second over the whole run.
    public var throughput: Double {
        elapsed > 0 ? Double(succeeded) / elapsed : 0
    }

    private var samples: [(at: UInt32, latency: UInt32)] = []
    private var failureTimes: [UInt32] = []

    enum CodingKeys: String, CodingKey {
        case mode, clients, target, elapsed, requests, succeeded, failures, failureSamples, distinctResponders
        case answersByGeneration, answersBySlot
        case latency, timeline, events
    }

    init(clients states: [ClientState], events: [Event], elapsed: Double, configuration: LoadConfiguration) {
        mode = configuration.mode
        clients = configuration.clients
        target = configuration.target.description
        self.elapsed = elapsed
        self.events = events.sorted { $0.at < $1.at }
        samples = states.flatMap(\.samples).sorted { $0.at < $1.at }
        let allFailures = states.flatMap(\.failures)
        failureTimes = allFailures.map(\.at)
        succeeded = samples.count
        requests = succeeded + allFailures.count
        failures = Dictionary(grouping: allFailures, by: \.kind).mapValues(\.count)
        failureSamples = Array(states.flatMap(\.failureDetails).prefix(20))
        distinctResponders = states.reduce(into: Set<String>()) { $0.formUnion($1.responders) }.count
        answersByGeneration = states.reduce(into: [:]) { $0.merge($1.answersByGeneration, uniquingKeysWith: +) }
        answersBySlot = states.reduce(into: [:]) { $0.merge($1.answersBySlot, uniquingKeysWith: +) }
        latency = Self.summary(samples[...])
        var slices: [Slice] = []
        let sliceLength: UInt32 = 100_000
        let sliceCount = Int(elapsed * 10) + 1
        var start = 0
        for slice in 0..<sliceCount {
            let end = UInt32(slice + 1) * sliceLength
            var stop = start
            while stop < samples.count && samples[stop].at < end { stop += 1 }
            let failures = failureTimes.filter { $0 >= end - sliceLength && $0 < end }.count
            slices.append(
                Slice(
                    at: Double(slice) / 10, requests: stop - start + failures, failures: failures,
                    p99: Self.summary(samples[start..<stop]).p99))
            start = stop
        }
        timeline = slices
    }

    /// Latency of the requests that completed inside any of `windows` (seconds since start).
    public func latency(inside windows: [ClosedRange<Double>]) -> LatencySummary {
        Self.summary(samples.filter { sample in windows.contains { $0.contains(Double(sample.at) / 1e6) } }[...])
    }

    /// Latency of the requests that completed outside all of `windows`.
    public func latency(outside windows: [ClosedRange<Double>]) -> LatencySummary {
        Self.summary(samples.filter { sample in !windows.contains { $0.contains(Double(sample.at) / 1e6) } }[...])
    }

    /// Failures that happened inside any of `windows`.
    public func failures(inside windows: [ClosedRange<Double>]) -> Int {
        failureTimes.filter { time in windows.contains { $0.contains(Double(time) / 1e6) } }.count
    }

    private static func summary(_ samples: ArraySlice<(at: UInt32, latency: UInt32)>) -> LatencySummary {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for sample in samples {
            _ = histogram.record(UInt64(sample.latency))
        }
        guard histogram.totalCount > 0 else { return LatencySummary(count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0) }
        return LatencySummary(
            count: Int(histogram.totalCount), p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90),
            p99: histogram.valueAtPercentile(99), p999: histogram.valueAtPercentile(99.9), max: histogram.max)
    }
}
