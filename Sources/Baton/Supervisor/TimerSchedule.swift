import NIOCore

/// The supervisor's timers, by key, on its event loop: starting a timer replaces the
/// one of the same key, and a timer that was cancelled or replaced never fires, even
/// when its task had already been queued.
struct TimerSchedule<Key: Hashable & Sendable> {
    private var timers: [Key: (token: UInt64, scheduled: Scheduled<Void>, due: NIODeadline)] = [:]
    private var nextToken: UInt64 = 0

    /// Starts (or restarts) the timer `key`; when it fires, `fire` gets the key and a
    /// token for ``take(_:token:)``.
    mutating func start(
        _ key: Key, after delay: Duration, on eventLoop: EventLoop,
        fire: @escaping @Sendable (Key, UInt64) -> Void
    ) {
        timers[key]?.scheduled.cancel()
        nextToken += 1
        let token = nextToken
        let due = NIODeadline.now() + .nanoseconds(delay.nanoseconds)
        let scheduled = eventLoop.scheduleTask(deadline: due) { fire(key, token) }
        timers[key] = (token, scheduled, due)
    }

    func isRunning(_ key: Key) -> Bool {
        timers[key] != nil
    }

    /// When the timer `key` fires, on NIO's monotonic clock; nil if it does not run.
    func due(_ key: Key) -> NIODeadline? {
        timers[key]?.due
    }

    mutating func cancel(_ key: Key) {
        timers.removeValue(forKey: key)?.scheduled.cancel()
    }

    mutating func cancelAll() {
        for timer in timers.values {
            timer.scheduled.cancel()
        }
        timers = [:]
    }

    /// Whether the timer that fired with `token` is still the live one for `key`; if
    /// so it is done and forgotten.
    mutating func take(_ key: Key, token: UInt64) -> Bool {
        guard timers[key]?.token == token else { return false }
        timers[key] = nil
        return true
    }
}
