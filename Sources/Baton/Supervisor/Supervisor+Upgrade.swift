import Glibc

/// Upgrading in place (`batonctl upgrade`): handing the serving generation over to the
/// new binary, and taking it over in that binary.
extension Supervisor {
    /// Executes this program's file again in this process, keeping the pid, the sockets
    /// and the workers, which the new binary takes over (``resume(_:)``).
    /// The new binary is run on trial first (``UpgradeTrial``): it must read the handover
    /// and answer before it replaces this one.
    func upgrade(answering responder: ControlResponder) {
        guard upgradeTrial == nil else {
            responder.send(.failure("upgrade refused: the new binary is on trial already; nothing changed", .refused))
            return
        }
        if let refusal = InPlaceUpgrade.refusal(projection, executable: executable) {
            responder.send(.failure("upgrade refused: \(refusal); nothing changed", .refused))
            return
        }
        guard let serving = machine.serving else { return }
        upgradeError = nil
        let handover = UpgradeHandover(
            serving, workers: workers, sockets: sockets.handOver(), descriptorsFromParent: descriptorsFromParent,
            scaledTo: reloads.scaledTo, upgrades: upgrades + 1, notifyDirectory: notifyDirectory,
            reloadStatistics: reloads.statistics)
        do {
            let trial = try mainThread.perform { [executable] in try UpgradeTrial.start(executable, handover, responder: responder) }
            trial.watch(on: eventLoop)
            upgradeTrial = trial
            logger.info("upgrading in place: trying \(executable) first (pid \(trial.pid))")
        } catch {
            responder.send(.failure("upgrade failed: \(executable) could not be tried: \(error); nothing changed", .rolledBack))
        }
    }

    /// The new binary's trial ended: executes it if it proved itself, else says why not.
    func upgradeTrialEnded(_ trial: UpgradeTrial, status: Int32) {
        upgradeTrial = nil
        if let failure = trial.failure(status: status) {
            upgradeError = failure
            logger.error("upgrade failed, this Baton carries on with its workers: \(failure)")
            trial.responder.send(.failure("upgrade failed: \(failure); this Baton carries on with the same workers", .rolledBack))
            return
        }
        executeUpgrade(answering: trial.responder)
    }

    /// Executes the new binary, which proved itself, in this process.
    private func executeUpgrade(answering responder: ControlResponder) {
        // The service may have changed during the trial.
        if let refusal = InPlaceUpgrade.refusal(projection, executable: executable) {
            responder.send(.failure("upgrade refused: \(refusal); nothing changed", .refused))
            return
        }
        guard let serving = machine.serving else { return }
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
