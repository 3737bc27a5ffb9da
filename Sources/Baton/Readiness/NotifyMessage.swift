/// One sd_notify message, as far as Baton cares. (`package`: the fuzz target reads it.)
package struct NotifyMessage: Equatable {
    package var ready = false
    package var stopping = false
    package var status: String?

    package init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line == "READY=1" {
                ready = true
            } else if line == "STOPPING=1" {
                stopping = true
            } else if line.hasPrefix("STATUS=") {
                status = String(line.dropFirst(7))
            }
        }
    }
}

extension NotifyMessage {
    /// What the message tells the state machine about `worker`, in the order a worker
    /// that sends several fields at once means them.
    func events(for worker: WorkerID) -> [SupervisorEvent] {
        var events: [SupervisorEvent] = []
        if let status { events.append(.workerStatus(worker, status)) }
        if ready { events.append(.workerReady(worker)) }
        if stopping { events.append(.workerStopping(worker)) }
        return events
    }
}
