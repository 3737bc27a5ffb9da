import ServiceLifecycle

/// A service that waits for the graceful shutdown (the drain) and then tells the
/// supervisor `STOPPING=1`. ``BatonWorker/run(services:drainSignals:logger:)`` runs it
/// last, so it is the first to hear of the shutdown.
struct DrainNotice: Service {
    let notifier: ServiceNotifier

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: the group is going down without a drain
        }
        notifier.stopping(status: "draining")
    }
}
