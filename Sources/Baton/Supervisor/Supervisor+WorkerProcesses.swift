import Glibc

/// Worker processes: spawning one with its notify socket and readiness, its
/// notifications, its readiness probe, and its exit.
extension Supervisor {
    func childExited(_ pid: pid_t, status: Int32) {
        if let trial = upgradeTrial, trial.pid == pid {
            upgradeTrialEnded(trial, status: status)
            return
        }
        if let run = canaryChecks.reaped(pid) {
            canaryCheckExited(pid, run, status: status)
            return
        }
        switch workers.reaped(pid) {
        case .worker(let worker, let entry):
            entry.notifySocket?.close()
            lingerIfNeeded(group: pid, of: worker)
            // A probe of a worker that is gone has nothing left to check.
            for probe in workers.takeProbes(of: worker) {
                Glibc.kill(-probe, SIGKILL)
            }
            killCanaryChecks(against: worker)
            cancelTimer(.readinessDelay(worker))
            cancelTimer(.probe(worker))
            reaped = (worker, entry.pid)
            defer { reaped = nil }
            let lastWords = entry.standardError?.lastLines() ?? []
            feed(.workerExited(worker, status < 0 ? .signaled(-status) : .exited(status), lastWords: lastWords))
        case .probe(let worker):
            // What the probe started and left behind (`sleep 300 &`) ends with it: it
            // leads a session and group of its own.
            Glibc.kill(-pid, SIGKILL)
            guard workers[worker] != nil else { return }
            if status == 0 {
                feed(.workerReady(worker))
            } else {
                startTimer(.probe(worker), after: ReadinessProbe.retry)
            }
        case .unknown:
            logger.debug("reaped pid \(pid) (an orphan), status \(status)")
            forgetEmptiedGroups()
        }
    }

    /// Starts these workers in one trip to the main thread for them all (each trip wakes
    /// two threads); one that fails to start is reported, and the others start.
    func spawn(_ batch: [SupervisorStep.WorkerStart]) {
        var prepared: [(start: SupervisorStep.WorkerStart, notifySocket: NotifySocket, sockets: [(name: String, fd: Int32)])] = []
        for start in batch {
            let worker = start.worker
            let notifySocket: NotifySocket
            do {
                notifySocket = try self.notifySocket(for: worker, start.configuration)
            } catch {
                feed(.workerExited(worker, .failedToStart("\(error)")))
                continue
            }
            do {
                let sockets = try sockets.sockets(for: start.configuration, slot: worker.slot, generation: worker.generation)
                prepared.append((start, notifySocket, sockets))
            } catch {
                notifySocket.close()
                feed(.workerExited(worker, .failedToStart("\(error)")))
            }
        }
        guard !prepared.isEmpty else { return }
        let starts = prepared.map { ($0.start, $0.sockets, $0.notifySocket.address) }
        let launches = mainThread.perform { [launcher] in
            starts.map { start, sockets, address in
                Result { try launcher.launch(start.worker, start.configuration, sockets: sockets, notifyAddress: address) }
            }
        }
        for ((start, notifySocket, _), launched) in zip(prepared, launches) {
            let worker = start.worker
            switch launched {
            case .success(let launched):
                let pid = launched.pid
                workers.add(
                    worker,
                    .init(pid: pid, started: Clock.monotonic(), notifySocket: notifySocket, standardError: launched.standardError))
                logger.info("started worker \(worker) (pid \(pid))", metadata: LogMetadata.worker(worker, pid: pid))
                switch start.configuration.workers.readiness {
                case .notify:
                    break
                case .delay(let delay):
                    startTimer(.readinessDelay(worker), after: delay)
                case .exec:
                    startTimer(.probe(worker), after: ReadinessProbe.firstRun)
                }
            case .failure(let error):
                notifySocket.close()
                feed(.workerExited(worker, .failedToStart("\(error)")))
            }
        }
    }

    /// The worker's own `NOTIFY_SOCKET`, named after the worker in the private
    /// directory, so that it is the same again after an upgrade in place. A worker
    /// adopted from a Baton that had no directory keeps its abstract address.
    /// A worker that runs as another user owns its socket, and can pass through the directory.
    func notifySocket(for worker: WorkerID, _ configuration: Configuration, abstract: Bool = false) throws(SystemError) -> NotifySocket {
        let address = abstract || notifyDirectory == nil ? "@baton/\(getpid())/\(worker)" : notifyDirectory!.address(of: worker)
        let owner = configuration.workers.credentials.map { (uid: $0.uid, gid: $0.gid) }
        if let owner, owner.uid != geteuid() {
            try notifyDirectory?.allowTraversal()
        }
        return try NotifySocket(address: address, owner: owner) { [self] sender, text in
            post(.notification(worker, sender: sender, text))
        }
    }

    func runProbe(for worker: WorkerID) {
        guard let pid = workers.pid(of: worker), let generation = machine.generation(worker.generation),
            case .exec(let command) = generation.configuration.workers.readiness
        else { return }
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let request = ReadinessProbe.request(
            command, for: worker, pid: pid, settings: generation.configuration.workers,
            environment: launcher.environment, output: devNull)
        do {
            workers.addProbe(try ProcessSpawner.spawn(request), for: worker)
        } catch {
            logger.warning("readiness probe for worker \(worker) could not start: \(error)", metadata: LogMetadata.worker(worker, pid: pid))
            startTimer(.probe(worker), after: ReadinessProbe.retryAfterSpawnFailure)
        }
    }

    /// A notification on the worker's own socket: fed only if it comes from the worker
    /// or a live descendant of it.
    func notification(_ text: String, for worker: WorkerID, from sender: pid_t) {
        guard let entry = workers[worker] else { return }
        guard sender > 0 else {
            logger.warning("notification for worker \(worker) without its sender's credentials, dropped")
            return
        }
        guard ProcessAncestry.belongs(sender, to: entry.pid, trustingExited: entry.notifySocket?.isPrivate ?? false) else {
            logger.warning(
                "notification for worker \(worker) from pid \(sender), not the worker or a live descendant of it, dropped",
                metadata: LogMetadata.worker(worker, pid: entry.pid))
            return
        }
        NotifyMessage(text).events(for: worker).forEach(feed)
    }
}
