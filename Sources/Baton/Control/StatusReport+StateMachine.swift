// The state machine keeps its own enums, which hold what only the machine needs; these
// map them onto the status's, case by case, so that a new case cannot go unreported.

extension StatusReport.GenerationStatus.Role {
    init(_ role: SupervisorStateMachine.Generation.Role) {
        self =
            switch role {
            case .starting: .starting
            case .serving: .serving
            case .leaving: .leaving
            case .draining: .draining
            case .rollingBack: .rollingBack
            }
    }
}

extension StatusReport.WorkerStatus.State {
    /// `stopping` is not a state of the machine's: it is a draining worker that said
    /// `STOPPING=1`.
    init(_ state: SupervisorStateMachine.Worker.State) {
        self =
            switch state {
            case .starting: .starting
            case .ready: .ready
            case .draining: .draining
            case .killed: .killed
            }
    }
}
