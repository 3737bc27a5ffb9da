import Testing

@testable import Baton

/// How the supervisor carries out a list of actions: in order, with the workers of a
/// run of starts and timers started together (one trip to the main thread).
@Suite struct SupervisorStepTests {
    typealias Step = SupervisorStep
    let configuration = SupervisorStateMachineTests.configuration()

    func start(_ slot: Int) -> SupervisorAction { .spawn(WorkerID(generation: 2, slot: slot), configuration) }
    func ready(_ slot: Int) -> SupervisorAction { .startTimer(.readyTimeout(WorkerID(generation: 2, slot: slot)), after: .seconds(5)) }
    func worker(_ slot: Int) -> Step.WorkerStart { .init(worker: WorkerID(generation: 2, slot: slot), configuration: configuration) }

    @Test func startsOfARunGoTogetherBeforeItsTimers() {
        let steer = SupervisorAction.steer([1: [0, 1]])
        let drain = SupervisorAction.startTimer(.drainGrace(generation: 1), after: .seconds(5))
        let steps = Step.steps([drain, start(0), ready(0), start(1), ready(1), steer, start(2), ready(2)])
        #expect(
            steps == [
                .perform(drain), .start([worker(0), worker(1)]), .perform(ready(0)), .perform(ready(1)), .perform(steer),
                .start([worker(2)]), .perform(ready(2)),
            ])
    }

    @Test func actionsWithoutStartsKeepTheirOrder() {
        let actions: [SupervisorAction] = [
            .startTimer(.drainGrace(generation: 1), after: .seconds(5)), .signal(WorkerID(generation: 1, slot: 0), 15),
            .cancelTimer(.drainGrace(generation: 1)),
        ]
        #expect(Step.steps(actions) == actions.map(Step.perform))
        #expect(Step.steps([]) == [])
    }

    /// A reload's new generation, from the machine itself: every worker in one start, in
    /// slot order, and every other action kept, in its order.
    @Test func aReloadStartsItsGenerationInOneTrip() {
        var machine = SupervisorStateMachineTests.serving(workers: 4)
        _ = machine.handle(.reloadRequested(1))
        let actions = machine.handle(.configurationLoaded(SupervisorStateMachineTests.configuration(workers: 4, command: "./v2")))
        let steps = Step.steps(actions)
        let starts = steps.compactMap { step -> [Step.WorkerStart]? in
            if case .start(let starts) = step { return starts } else { return nil }
        }
        #expect(starts.count == 1)
        #expect(starts.first?.map(\.worker.slot) == [0, 1, 2, 3])
        let others = actions.filter { if case .spawn = $0 { false } else { true } }
        #expect(steps.compactMap { if case .perform(let action) = $0 { action } else { nil } } == others)
    }
}
