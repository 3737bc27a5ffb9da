/// Stopping, and the readiness that load balancers and orchestrators read at `/ready`.
extension Supervisor {
    /// Whether Baton serves and no stop began: a generation serves, with at least one ready worker.
    var isReady: Bool {
        guard !stopBegan, machine.phase != .stopping, machine.phase != .stopped, let serving = machine.serving else { return false }
        return serving.workers.values.contains { $0.state == .ready }
    }

    /// Stops Baton: at once, or, with a `stop_delay`, once it is over. Meanwhile the
    /// workers serve on and `/ready` answers 503, so that whoever sends connections here
    /// stops first; a second stop does not wait for the rest of the delay.
    func beginStop() {
        if !stopBegan, let delay = machine.serving?.configuration.stopDelay, delay > .zero {
            stopBegan = true
            logger.notice("stopping in \(DurationFormat.string(delay)) (stop_delay): the workers serve on, /ready answers 503")
            startTimer(.stopDelay, after: delay)
            return
        }
        stopBegan = true
        cancelTimer(.stopDelay)
        feed(.stopRequested)
    }
}
