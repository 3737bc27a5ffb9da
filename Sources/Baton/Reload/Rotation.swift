/// Which sockets take new connections: the one place that decides it.
///
/// A rotation lists, by generation number, the slots whose sockets of that generation
/// take new connections; a slot listed more than once gets that many entries of the
/// steering map, and as many shares of new connections. Only slots whose worker is
/// ready are in it, and it is never empty: a steering map without sockets would leave
/// the choice to the kernel's hash over every socket, dead ones included.
enum Rotation {
    /// The rotation for who is where now: the serving generation's ready slots, or
    /// during a rollout each slot's socket of the generation that owns the slot, with
    /// a canary's share beside every old worker. Empty when no worker is ready.
    static func of(_ table: GenerationTable, rollout: RolloutStateMachine?) -> [Int: [Int]] {
        if let rollout {
            return of(table, rollout)
        }
        guard let serving = table.serving, !serving.readySlots.isEmpty else { return [:] }
        return [serving.number: serving.readySlots]
    }

    private static func of(_ table: GenerationTable, _ rollout: RolloutStateMachine) -> [Int: [Int]] {
        if let canary = rollout.canary, !canary.slots.isEmpty {
            return of(table, rollout, canary)
        }
        var rotation: [Int: [Int]] = [:]
        for slot in 0..<rollout.slots {
            let owner = rollout.owner(of: slot)
            guard table.generation(owner)?.workers[slot]?.state == .ready else { continue }
            rotation[owner, default: []].append(slot)
        }
        return rotation
    }

    /// With a canary: every ready old worker's socket, and beside them the ready canary
    /// workers' sockets with as many entries as gives them `weight` percent of the rotation.
    private static func of(_ table: GenerationTable, _ rollout: RolloutStateMachine, _ canary: RolloutStateMachine.CanaryHold) -> [Int: [Int]] {
        func ready(_ number: Int, _ slots: some Sequence<Int>) -> [Int] {
            guard let generation = table.generation(number) else { return [] }
            return slots.filter { generation.workers[$0]?.state == .ready }
        }
        let old = ready(rollout.from, 0..<rollout.slots)
        let new = ready(rollout.to, canary.slots)
        guard !old.isEmpty, !new.isEmpty else {
            return old.isEmpty ? (new.isEmpty ? [:] : [rollout.to: new]) : [rollout.from: old]
        }
        let entries = entries(old: old.count, canary: new.count, weight: canary.asked.weight)
        return [
            rollout.from: old.flatMap { Array(repeating: $0, count: entries.old) },
            rollout.to: new.flatMap { Array(repeating: $0, count: entries.canary) },
        ]
    }

    /// How many rotation entries each old and each canary socket gets, so that the canary
    /// sockets together get `weight` percent of the entries (and of new connections).
    static func entries(old: Int, canary: Int, weight: Int, capacity: Int = 1024) -> (old: Int, canary: Int) {
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        var perOld = canary * (100 - weight)
        var perCanary = old * weight
        let divisor = gcd(perOld, perCanary)
        perOld /= divisor
        perCanary /= divisor
        let total = old * perOld + canary * perCanary
        if total > capacity {
            let scale = Double(capacity) / Double(total)
            perOld = max(1, Int((Double(perOld) * scale).rounded()))
            perCanary = max(1, Int((Double(perCanary) * scale).rounded()))
        }
        return (perOld, perCanary)
    }
}

extension SupervisorStateMachine {
    /// Points the steering at the rotation for who is where now; returns false,
    /// changing nothing, when no worker is ready to take new connections.
    @discardableResult
    func steer(into actions: inout [SupervisorAction]) -> Bool {
        let rotation = Rotation.of(table, rollout: rollout)
        guard !rotation.isEmpty else { return false }
        actions.append(.steer(rotation))
        return true
    }
}
