import Glibc

/// Upgrading in place (`batonctl upgrade`): handing the serving generation over to the
/// new binary, and taking it over in that binary.
extension Supervisor {
    /// Executes this program's file again in this process, keeping the pid, the sockets
    /// and the workers, which the new binary takes over (``resume(_:)``).
    func upgrade(answering responder: ControlResponder) {
        if let refusal = InPlaceUpgrade.refusal(projection, executable: executable) {
            responder.send(.failure("upgrade refused: \(refusal); nothing changed"))
            return
        }
        guard let serving = machine.serving else { return }
        upgradeError = nil
        let handover = UpgradeHandover(
            serving, workers: workers, sockets: sockets.handOver(), descriptorsFromParent: descriptorsFromParent,
            scaledTo: reloads.scaledTo, upgrades: upgrades + 1, notifyDirectory: notifyDirectory,
            reloadStatistics: reloads.statistics)
        logger.notice("upgrading in place: executing \(executable)")
        responder.send(ControlReply(ok: true, final: true, message: "upgrading: baton \(getpid()) executes \(executable)")) { [self] in
            finished?.succeed(.upgrade(handover))
        }
    }

    /// Takes over what the replaced binary handed over, as generation `generation`.
    func resume(_ handover: UpgradeHandover) {
        for (id, pid) in handover.workerIDs {
            // The same address as before execve: the pid did not change.
            let socket = try? notifySocket(for: id, handover.configuration, abstract: handover.notifyDirectory == nil)
            workers.add(id, .init(pid: pid, started: Clock.monotonic(), notifySocket: socket))
        }
        feed(.resume(handover.configuration, generation: handover.generation, workers: handover.workerIDs.map(\.id)))
    }
}
