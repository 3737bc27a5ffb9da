import Glibc

/// Readings of the system clocks, as seconds.
enum Clock {
    /// Seconds on `CLOCK_MONOTONIC`: for uptimes, which a change of the wall clock must not bend.
    static func monotonic() -> Double {
        seconds(of: CLOCK_MONOTONIC)
    }

    /// Seconds since the epoch: for times shown to people, such as when a reload started.
    static func wallTime() -> Double {
        seconds(of: CLOCK_REALTIME)
    }

    private static func seconds(of clock: clockid_t) -> Double {
        var now = timespec()
        clock_gettime(clock, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

extension Duration {
    /// The whole duration in nanoseconds, as NIO's `TimeAmount` takes it; one too long
    /// for an `Int64` (about 292 years) saturates rather than trapping.
    var nanoseconds: Int64 {
        let (seconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return components.seconds < 0 ? .min : .max }
        let (total, overflowAgain) = seconds.addingReportingOverflow(components.attoseconds / 1_000_000_000)
        return overflowAgain ? .max : total
    }
}
