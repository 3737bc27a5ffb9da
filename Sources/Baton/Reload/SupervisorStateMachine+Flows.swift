/// Generations that keep UDP flows (Docs/steering.md, "UDP flows"): their sockets keep
/// receiving their flows' datagrams after they leave the rotation, so waiting for those
/// sockets to be empty means nothing. A replaced one is told to drain at once (a QUIC
/// server then finishes its connections and exits), its flows reach it until its workers
/// exit or `drain_timeout` kills them, and it does not hold up the next reload: several
/// such generations may drain side by side.
extension SupervisorStateMachine {
    /// Generations a new reload must wait for: all but the draining ones that keep flows.
    var generationsHoldingReloads: Int {
        table.indices.count { !(table[$0].role == .draining && table[$0].configuration.keepsFlows) }
    }

    /// Why a configuration that keeps flows cannot be rolled out slot by slot: a slot's
    /// replaced worker would leave its socket, which its flows keep reaching, open with
    /// nobody reading it until the rest of its generation is gone. It reloads all at once.
    static func flowsObstacle(_ configuration: Configuration) -> String? {
        configuration.keepsFlows ? "a listener keeps UDP flows, which stay with their generation as a whole" : nil
    }

    /// Takes a replaced generation out of rotation: one that keeps flows drains at once,
    /// any other leaves and drains once its sockets are empty.
    mutating func replace(_ index: Int, into actions: inout [SupervisorAction]) {
        if table[index].configuration.keepsFlows {
            drain(index, into: &actions)
        } else {
            leave(index, into: &actions)
        }
    }
}

extension Configuration {
    /// Whether a listener keeps UDP flows with their generation (`flows` other than `none`).
    var keepsFlows: Bool {
        listeners.contains { $0.flows != .none }
    }
}
