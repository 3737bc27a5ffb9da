import Testing

@testable import Baton

/// Which sockets take new connections, computed from who is where alone.
@Suite struct RotationTests {
    func g(_ generation: Int, _ slot: Int) -> WorkerID { WorkerID(generation: generation, slot: slot) }

    /// Generation 1 serving with `ready` of its 4 slots ready, and generation 2 with
    /// `newReady` of its slots ready.
    static func table(ready: [Int], newReady: [Int] = []) -> GenerationTable {
        var table = GenerationTable()
        for (generation, slots) in [(1, ready), (2, newReady)] {
            let index = table.add(SupervisorStateMachineTests.configuration(workers: 4))
            table[index].role = generation == 1 ? .serving : .starting
            for slot in 0..<4 {
                _ = table.startWorker(WorkerID(generation: generation, slot: slot), at: index)
                if slots.contains(slot) { table[index].workers[slot]?.state = .ready }
            }
        }
        return table
    }

    @Test func withoutARolloutTheServingGenerationsReadySlotsTakeNewConnections() {
        #expect(Rotation.of(Self.table(ready: [3, 0, 2]), rollout: nil) == [1: [0, 2, 3]])
        #expect(Rotation.of(Self.table(ready: []), rollout: nil).isEmpty, "no ready worker: nothing to steer to")
    }

    @Test func duringARolloutEachSlotIsItsOwnersSocket() {
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: 4)
        rollout.replaced = [0, 1]
        #expect(Rotation.of(Self.table(ready: [0, 1, 2, 3], newReady: [0, 1, 2]), rollout: rollout) == [1: [2, 3], 2: [0, 1]])
        #expect(
            Rotation.of(Self.table(ready: [0, 1, 2, 3], newReady: [1]), rollout: rollout) == [1: [2, 3], 2: [1]],
            "a replaced slot whose new worker is gone leaves the rotation; the old one does not come back")
    }

    @Test func aCanaryTakesItsWeightBesideEveryOldWorker() {
        var rollout = RolloutStateMachine(from: 1, to: 2, batch: 1, slots: 4, canary: Canary(workers: 1, weight: 25))
        rollout.canary?.slots = [0]
        let rotation = Rotation.of(Self.table(ready: [0, 1, 2, 3], newReady: [0]), rollout: rollout)
        let entries = Rotation.entries(old: 4, canary: 1, weight: 25)
        #expect(rotation[1]?.count == 4 * entries.old)
        #expect(rotation[2] == Array(repeating: 0, count: entries.canary))
        #expect(Double(entries.canary) / Double(4 * entries.old + entries.canary) == 0.25)
        #expect(Rotation.of(Self.table(ready: [], newReady: [0]), rollout: rollout) == [2: [0]], "the canary alone rather than nothing")
        #expect(Rotation.of(Self.table(ready: [1], newReady: []), rollout: rollout) == [1: [1]])
    }
}
