extension StatusReport {
    /// Every reload that finished since Baton started (unlike ``StatusReport/reloads``,
    /// which keeps only the recent ones): how many ended each way, and how long they took
    /// from reading the configuration to their outcome.
    public struct ReloadStatistics: Codable, Sendable, Equatable {
        public var tookOver: Int
        public var rolledBack: Int
        public var canceled: Int
        public var failed: Int
        public var durations: Histogram

        public init(
            tookOver: Int = 0, rolledBack: Int = 0, canceled: Int = 0, failed: Int = 0,
            durations: Histogram = Histogram(bounds: Self.durationBounds)
        ) {
            self.tookOver = tookOver
            self.rolledBack = rolledBack
            self.canceled = canceled
            self.failed = failed
            self.durations = durations
        }

        private enum CodingKeys: String, CodingKey {
            case tookOver, rolledBack, canceled, failed, durations
        }

        /// Statistics handed over by `batonctl upgrade` from a Baton that counted no
        /// canceled reloads have none.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            tookOver = try container.decode(Int.self, forKey: .tookOver)
            rolledBack = try container.decode(Int.self, forKey: .rolledBack)
            canceled = try container.decodeIfPresent(Int.self, forKey: .canceled) ?? 0
            failed = try container.decode(Int.self, forKey: .failed)
            durations = try container.decode(Histogram.self, forKey: .durations)
        }

        /// Upper bounds of the duration buckets, in seconds: a reload takes as long as
        /// its workers take to become ready, from a blink to `ready_timeout` (60s by default).
        public static let durationBounds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

        /// Reloads that ended with `outcome`; none are counted as `running`.
        public subscript(outcome: ReloadRecord.Outcome) -> Int {
            switch outcome {
            case .running: 0
            case .tookOver: tookOver
            case .rolledBack: rolledBack
            case .canceled: canceled
            case .failed: failed
            }
        }

        /// Counts a reload that ended with `outcome` after `seconds`.
        public mutating func record(_ outcome: ReloadRecord.Outcome, seconds: Double) {
            switch outcome {
            case .running: return
            case .tookOver: tookOver += 1
            case .rolledBack: rolledBack += 1
            case .canceled: canceled += 1
            case .failed: failed += 1
            }
            durations.observe(seconds)
        }
    }

    /// Observations counted into buckets, as a Prometheus histogram shows them.
    public struct Histogram: Codable, Sendable, Equatable {
        /// Upper bounds, ascending; the last bucket (`+Inf`) is implied.
        public var bounds: [Double]
        /// Observations per bucket, not cumulative: `counts[i]` are those above
        /// `bounds[i - 1]` and at most `bounds[i]`; the last are above every bound.
        public var counts: [Int]
        public var sum: Double

        public init(bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count + 1)
            sum = 0
        }

        public var count: Int { counts.reduce(0, +) }

        public mutating func observe(_ value: Double) {
            let value = value.isFinite ? max(value, 0) : 0
            counts[bounds.firstIndex { value <= $0 } ?? bounds.count] += 1
            sum += value
        }
    }
}
