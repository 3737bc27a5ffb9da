import Glibc
import NIOConcurrencyHelpers
import NIOCore

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

    /// On the main thread: executes the new binary, which replaces this process if it
    /// can. If it cannot, this Baton carries on: the failure is kept for status, and the
    /// promise returned is the next outcome to wait for.
    func execute(_ handover: UpgradeHandover) throws -> EventLoopPromise<Outcome> {
        // The event loop, which accepts control and /metrics connections (SwiftNIO
        // accepts without SOCK_CLOEXEC), waits while this thread executes: a
        // connection accepted meanwhile would outlive the execve unanswered.
        let parked = ConditionLock(value: 0)
        eventLoop.execute {
            parked.lock()
            parked.unlock(withValue: 1)
            parked.lock(whenValue: 2)
            parked.unlock()
        }
        parked.lock(whenValue: 1)
        parked.unlock()
        let error = InPlaceUpgrade.execute(executable, handover)
        parked.lock()
        parked.unlock(withValue: 2)
        return try mainThread.serve(
            until: eventLoop.submit { [self] in
                upgradeError = "\(error)"
                logger.error("upgrade failed, this Baton carries on: \(error)")
                let next = eventLoop.makePromise(of: Outcome.self)
                self.finished = next
                return next
            })
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
        let held = heldUntilResumed ?? []
        heldUntilResumed = nil
        held.forEach(handle)
    }
}
