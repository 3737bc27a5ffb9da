@testable import Baton

/// A signal the machine sends a worker, as the state machine suites compare them.
struct Signal: Hashable, CustomStringConvertible {
    var worker: WorkerID
    var signal: Int32
    init(_ worker: WorkerID, _ signal: Int32) {
        self.worker = worker
        self.signal = signal
    }
    var description: String { "\(signal)→\(worker)" }
}

/// What the state machine suites look for in a list of actions.
extension Array where Element == SupervisorAction {
    var spawned: [WorkerID] {
        compactMap { if case .spawn(let worker, _) = $0 { worker } else { nil } }
    }

    var signals: [Signal] {
        compactMap { if case .signal(let worker, let signal) = $0 { Signal(worker, signal) } else { nil } }
    }

    var timers: [SupervisorTimer] {
        compactMap { if case .startTimer(let timer, _) = $0 { timer } else { nil } }
    }

    var reports: [ReloadProgress] {
        compactMap { if case .reportReload(_, let progress) = $0 { progress } else { nil } }
    }

    var steerings: [SupervisorAction] {
        filter {
            switch $0 {
            case .steer: true
            default: false
            }
        }
    }
}
