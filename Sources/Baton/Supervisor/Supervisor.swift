import CBatonShim
import Glibc
import Logging
import NIOCore
import NIOPosix

/// The shell around ``SupervisorStateMachine``: it turns signals, child exits,
/// notifications, timers and control requests into events, and performs the actions
/// that come out. All of its state is owned by one event loop; other threads only
/// ``post(_:)`` inputs to it.
///
/// No Swift concurrency and no Dispatch queues: both run on libdispatch's thread pool,
/// whose monitor wakes the process every second, and an idle Baton must not wake.
public final class Supervisor: @unchecked Sendable {
    enum Input: Sendable {
        case delivery(SignalWatcher.Delivery)
        case notification(WorkerID, sender: pid_t, String)
        case timer(TimerKey, token: UInt64)
        case control(ControlRequest, ControlResponder)
    }

    enum TimerKey: Hashable, Sendable {
        case machine(SupervisorTimer)
        /// `readiness = "delay:…"`: the worker counts as ready then.
        case readinessDelay(WorkerID)
        /// `readiness = "exec:…"`: time to run the probe (again).
        case probe(WorkerID)
        /// Time to look whether a leaving generation's sockets are empty.
        case queues(generation: Int)
        /// Time to look whether the slot of a worker a rolling reload replaced is empty.
        case slotQueues(WorkerID)
        /// `stall_timeout`: time to look whether a serving worker accepts.
        case stalls
        /// A worker that exited left processes in its group: time to kill them.
        case lingering(group: pid_t)
        /// The run of the canary's health check with this pid is still running: kill it.
        case canaryCheckDeadline(pid_t)
    }

    /// What the main thread does next: exit with a code, or execute the new binary.
    enum Outcome {
        case exit(Int32)
        case upgrade(UpgradeHandover)
    }

    private let source: ConfigurationSource
    private let logger: Logger
    private let eventLoop: EventLoop
    private var machine = SupervisorStateMachine()
    private let sockets: SocketTable
    private let systemd = SystemdNotifier()
    private let announcer: ServiceAnnouncer
    private let launcher: WorkerLauncher
    private var workers = WorkerTable()
    private var reloads = ReloadLedger<ControlResponder>()
    private var timers = TimerSchedule<TimerKey>()
    private var leaving = EmptyQueueWatch<Int>()
    private var departing = EmptyQueueWatch<WorkerID>()
    /// The strategy `batonctl reload --strategy` asked for, for the next configuration loaded.
    private var strategyForNextReload: (strategy: ReloadStrategy, batch: Int?)?
    /// The canary `batonctl reload --canary` asked for, for the next configuration loaded.
    private var canaryForNextReload: Canary?
    /// When the canary's hold ends, on the monotonic clock.
    private var canaryHoldEnds: Double?
    /// The steering counters when the canary took its share.
    private var canaryBaseline: CanaryBaseline?
    /// Runs of the canary's health check under way, by pid: how long each may take, and
    /// whether it was killed for taking longer.
    private var canaryChecks: [pid_t: (timeout: Duration, killed: Bool)] = [:]
    private var stalls = StallWatch()
    /// Where the control server listens: a reload cannot move it.
    private var controlSocket = ""
    /// Made once nothing can fail before the loop runs.
    private var finished: EventLoopPromise<Outcome>?

    /// This program, as `batonctl upgrade` executes it again: the path it was started
    /// from, where the new binary is expected.
    private let executable = (try? FileContents.link("/proc/self/exe")) ?? CommandLine.arguments[0]
    private var upgrades = 0
    private var upgradeError: String?
    /// What the parent passed and every upgrade keeps.
    private var descriptorsFromParent: [Int32] = []
    /// Where workers are forked, so that their parent-death signal outlives upgrades.
    private let mainThread = MainThread()
    /// Process groups of exited workers that still have members, each killed at the end
    /// of its worker's drain timeout; Baton exits only once they are empty.
    private var lingering: [pid_t: WorkerID] = [:]
    /// Groups that have had the drain signal already.
    private var drainedGroups: Set<pid_t> = []
    /// The exit code, once Baton is done but for lingering groups.
    private var pendingExit: Int32?
    /// Where the workers' notify sockets are.
    private var notifyDirectory: NotifyDirectory?
    /// `/metrics`, at the serving configuration's address.
    private var metrics: MetricsEndpoint?

    private init(source: ConfigurationSource, logger: Logger, eventLoop: EventLoop) {
        self.source = source
        self.logger = logger
        self.eventLoop = eventLoop
        launcher = WorkerLauncher(logger: logger)
        announcer = ServiceAnnouncer(logger: logger, systemd: systemd)
        sockets = SocketTable(logger: logger, systemd: systemd, inherited: .fromSystemd(logger: logger))
    }

    /// Blocks the signals Baton handles. Call it first thing in `main`, before any
    /// thread exists, so that no thread receives them the default way.
    public static func prepareProcess() {
        SignalWatcher.blockSignals()
        InPlaceUpgrade.recordDescriptorsAtStart()
    }

    /// Runs a service until it is stopped, and returns the exit code. Blocks the calling
    /// thread (the main thread, whose signals stay blocked) until then.
    public static func run(_ source: ConfigurationSource, logger: Logger) throws -> Int32 {
        // Created after prepareProcess(), so that its thread inherits the blocked signals.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        return try Supervisor(source: source, logger: logger, eventLoop: group.next()).run()
    }

    private func run() throws -> Int32 {
        let handover = try UpgradeHandover.take()
        let configuration: Configuration
        descriptorsFromParent = handover?.descriptorsFromParent ?? InPlaceUpgrade.descriptorsAtStart
        if let handover {
            sockets.take(handover)
            configuration = handover.configuration
            reloads.scaledTo = handover.scaledTo
            upgrades = handover.upgrades
            reloads.statistics = handover.reloadStatistics ?? reloads.statistics
        } else {
            let loaded = try source.load()
            try AddressOccupancy.check(loaded)
            configuration = try sockets.prepare(loaded)
        }
        defer { sockets.closeAll() }
        let notifyDirectory = try handover?.notifyDirectory ?? NotifyDirectory.make()
        self.notifyDirectory = notifyDirectory
        defer { notifyDirectory.remove() }
        let control = try ControlServer(path: configuration.controlSocket, eventLoop: eventLoop, access: ControlAccess(configuration),
                                        logger: logger) { [self] request, responder in
            post(.control(request, responder))
        }
        defer { control.close() }
        // Once the sockets and the control socket are set up: root's other capabilities
        // are of no use from here on (Capabilities).
        do {
            if let kept = try Capabilities.keepOnlyNeeded(for: configuration.workers) {
                logger.info("workers run as \(configuration.workers.user.map(\.name) ?? "?"): Baton keeps only \(kept.joined(separator: ", ")) of root's capabilities")
            }
        } catch {
            logger.warning("\(error); it keeps them")
        }
        try eventLoop.submit { [self] in controlSocket = control.path }.wait()
        let metrics = MetricsEndpoint(eventLoop: eventLoop, logger: logger) { [self] in PrometheusText.render(status()) }
        do {
            try metrics.start(configuration.metrics)
        } catch where handover != nil {
            // The workers serve on: an upgrade does not fail for want of its metrics port.
            logger.error("metrics endpoint not started after the upgrade: \(error)")
        }
        self.metrics = metrics
        defer { metrics.close() }
        if baton_become_subreaper() != 0 {
            logger.debug("could not become a child subreaper; orphans of workers go to init")
        }
        // The only periodic wake-up, and only when the service asks for it: the event
        // loop that owns all state answering proves that Baton is not stuck.
        let watchdog = systemd.watchdogInterval.map { interval in
            eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(interval.nanoseconds)) { [systemd] _ in
                systemd.send("WATCHDOG=1")
            }
        }
        defer { watchdog?.cancel() }

        var finished = eventLoop.makePromise(of: Outcome.self)
        self.finished = finished
        if let handover {
            logger.info("baton \(getpid()) upgraded in place to \(executable); generation \(handover.generation) serves on with \(handover.workers.count) worker(s); control socket \(control.path)")
            eventLoop.execute { [self] in resume(handover) }
        } else {
            logger.info("baton \(getpid()) starting \(configuration.workers.count) worker(s) of \(configuration.workers.command.joined(separator: " ")); control socket \(control.path)")
            eventLoop.execute { [self] in feed(.start(configuration)) }
        }
        // After the workers are known: a child that exited meanwhile is reaped as theirs.
        SignalWatcher.start { [self] in post(.delivery($0)) }
        defer { mainThread.close() }
        while true {
            switch try mainThread.serve(until: finished.futureResult) {
            case .exit(let code):
                try mainThread.serve(until: eventLoop.submit { [self] in timers.cancelAll() })
                return code
            case .upgrade(let handover):
                let error = InPlaceUpgrade.execute(executable, handover)
                finished = try mainThread.serve(until: eventLoop.submit { [self] in
                    upgradeError = "\(error)"
                    logger.error("upgrade failed, this Baton carries on: \(error)")
                    let next = eventLoop.makePromise(of: Outcome.self)
                    self.finished = next
                    return next
                })
            }
        }
    }

    /// Hands an input to the event loop; callable from any thread.
    private func post(_ input: Input) {
        eventLoop.execute { [self] in handle(input) }
    }

    // MARK: - Inputs

    private func handle(_ input: Input) {
        eventLoop.assertInEventLoop()
        switch input {
        case .delivery(.signal(let signal)):
            switch signal {
            case SIGHUP:
                feed(.reloadRequested(reloads.request(from: nil)))
            case SIGTERM, SIGINT, SIGQUIT:
                logger.info("\(SignalName.name(signal)) received")
                feed(.stopRequested)
            default:
                logger.info("\(SignalName.name(signal)) ignored")
            }
        case .delivery(.childExited(let pid, let status)):
            childExited(pid, status: status)
        case .notification(let worker, let sender, let text):
            guard let entry = workers[worker] else { return }
            guard sender > 0 else {
                logger.warning("notification for worker \(worker) without its sender's credentials, dropped")
                return
            }
            guard ProcessAncestry.belongs(sender, to: entry.pid, trustingExited: entry.notifySocket?.isPrivate ?? false) else {
                logger.warning("notification for worker \(worker) from pid \(sender), not the worker or a live descendant of it, dropped",
                               metadata: LogMetadata.worker(worker, pid: entry.pid))
                return
            }
            NotifyMessage(text).events(for: worker).forEach(feed)
        case .timer(let key, let token):
            guard timers.take(key, token: token) else { return }
            switch key {
            case .machine(let timer):
                feed(.timerFired(timer))
            case .readinessDelay(let worker):
                if workers[worker] != nil { feed(.workerReady(worker)) }
            case .probe(let worker):
                runProbe(for: worker)
            case .queues(let generation):
                lookAtQueues(of: generation)
            case .slotQueues(let worker):
                lookAtSlotQueues(of: worker)
            case .stalls:
                lookForStalls()
            case .lingering(let group):
                guard let worker = lingering[group] else { return }
                logger.warning("processes of worker \(worker)'s group \(group) outlived its drain timeout: sending SIGKILL to the group")
                Glibc.kill(-group, SIGKILL)
                // Done with it: a zombie whose parent never reaps it would keep the
                // group alive, and Baton from exiting.
                lingering[group] = nil
                drainedGroups.remove(group)
                exitIfDone()
            case .canaryCheckDeadline(let pid):
                guard workers.isCanaryCheck(pid), canaryChecks[pid] != nil else { return }
                canaryChecks[pid]?.killed = true
                logger.warning("canary health check (pid \(pid)) still runs after \(DurationFormat.string(canaryChecks[pid]!.timeout)): sending SIGKILL to its process group")
                if Glibc.kill(-pid, SIGKILL) != 0 { Glibc.kill(pid, SIGKILL) }
            }
        case .control(let request, let responder):
            control(request, responder)
        }
    }

    private func control(_ request: ControlRequest, _ responder: ControlResponder) {
        switch request.command {
        case .status:
            responder.send(ControlReply(ok: true, final: true, status: status()))
        case .reload:
            if request.strategy != nil || request.batch != nil {
                guard let strategy = ReloadStrategy(rawValue: request.strategy ?? ReloadStrategy.rolling.rawValue) else {
                    let given = request.strategy.map { "\"\($0)\"" } ?? ""
                    responder.send(.failure("reload: unknown strategy \(given); expected \"all-at-once\" or \"rolling\"; nothing changed"))
                    return
                }
                if let batch = request.batch, !Settings.batch.accepts(batch) {
                    responder.send(.failure("reload: expected a batch of 1 to \(Settings.slots.upperBound) slots, got \(batch); nothing changed"))
                    return
                }
                strategyForNextReload = (strategy, request.batch)
            }
            if request.canary != nil || request.weight != nil || request.hold != nil || request.after != nil {
                switch canary(request) {
                case .success(let canary): canaryForNextReload = canary
                case .failure(let refusal):
                    strategyForNextReload = nil
                    responder.send(.failure("reload: \(refusal.reason); nothing changed"))
                    return
                }
            }
            feed(.reloadRequested(reloads.request(from: responder, wait: request.wait ?? false)))
        case .promote, .rollback:
            guard let rollout = machine.rollout, rollout.canary != nil else {
                responder.send(.failure("\(request.command.rawValue): no canary holds; nothing changed"))
                return
            }
            guard request.command == .rollback || !rollout.canarySlots.isEmpty else {
                responder.send(.failure("promote: the canary of generation \(rollout.to) is not ready yet; nothing changed"))
                return
            }
            let promoting = request.command == .promote
            responder.send(ControlReply(ok: true, final: true, message: promoting
                ? "promoting the canary of generation \(rollout.to)" : "rolling back the canary of generation \(rollout.to)"))
            feed(promoting ? .promoteRequested : .rollbackRequested)
        case .scale:
            guard let count = request.workers, Settings.workerCount.accepts(count) else {
                let given = request.workers.map { "\($0)" } ?? "no \"workers\""
                responder.send(.failure("scale: expected a number of workers from 1 to 1024, got \(given); nothing changed"))
                return
            }
            logger.info("scaling to \(count) worker(s): reloading")
            reloads.scaledTo = count
            feed(.reloadRequested(reloads.request(from: responder, wait: request.wait ?? false)))
        case .upgrade:
            upgrade(answering: responder)
        case .stop:
            responder.send(ControlReply(ok: true, final: true, message: "stopping: draining every worker"))
            feed(.stopRequested)
        }
    }

    private func childExited(_ pid: pid_t, status: Int32) {
        switch workers.reaped(pid) {
        case .worker(let worker, let entry):
            entry.notifySocket?.close()
            lingerIfNeeded(group: pid, of: worker)
            cancelTimer(.readinessDelay(worker))
            cancelTimer(.probe(worker))
            reaped = (worker, entry.pid)
            defer { reaped = nil }
            feed(.workerExited(worker, status < 0 ? .signaled(-status) : .exited(status)))
        case .probe(let worker):
            guard workers[worker] != nil else { return }
            if status == 0 {
                feed(.workerReady(worker))
            } else {
                startTimer(.probe(worker), after: ReadinessProbe.retry)
            }
        case .canaryCheck(let worker):
            cancelTimer(.canaryCheckDeadline(pid))
            let run = canaryChecks.removeValue(forKey: pid)
            let result: CanaryCheckResult
            if let run, run.killed {
                result = .failed("did not finish within \(DurationFormat.string(run.timeout)) and was killed")
            } else if status == 0 {
                result = .passed
            } else {
                result = .failed("\(status < 0 ? WorkerExit.signaled(-status) : .exited(status))")
            }
            if case .failed(let reason) = result {
                logger.warning("canary health check against worker \(worker) failed: \(reason)", metadata: LogMetadata.worker(worker, pid: pid))
            }
            feed(.canaryCheckResult(generation: worker.generation, result))
        case .unknown:
            logger.debug("reaped pid \(pid) (an orphan), status \(status)")
            for group in lingering.keys where Glibc.kill(-group, 0) != 0 {
                lingering[group] = nil
                drainedGroups.remove(group)
                cancelTimer(.lingering(group: group))
            }
            exitIfDone()
        }
    }

    // MARK: - The state machine

    /// Events that actions produce wait here until every action of the event before
    /// them has been performed, so that effects happen in the order they were decided.
    private var queuedEvents: [SupervisorEvent] = []
    /// The worker whose exit is being fed, for the pid on the line that announces it.
    private var reaped: (worker: WorkerID, pid: pid_t)?
    private var feeding = false

    private func feed(_ event: SupervisorEvent) {
        queuedEvents.append(event)
        guard !feeding else { return }
        feeding = true
        defer { feeding = false }
        while !queuedEvents.isEmpty {
            let actions = machine.handle(queuedEvents.removeFirst())
            switch machine.phase {
            case .loadingConfiguration(let ids), .reloading(let ids): LogMetadata.setReloadUnderWay(ids.first)
            default: LogMetadata.setReloadUnderWay(nil)
            }
            for action in actions {
                perform(action)
            }
        }
        watchForStalls()
    }

    private func perform(_ action: SupervisorAction) {
        switch action {
        case .loadConfiguration:
            // What this reload was asked for holds for this reload only, loaded or not.
            let strategy = strategyForNextReload
            let canary = canaryForNextReload
            strategyForNextReload = nil
            canaryForNextReload = nil
            // Off the event loop: status, /metrics and worker exits are handled meanwhile.
            source.load(on: eventLoop) { [self] loaded in
            do {
                var configuration = try loaded.get()
                guard configuration.controlSocket == controlSocket else {
                    throw ConfigurationError(source: source.name, key: "control_socket", value: configuration.controlSocket.quoted,
                                             problem: "the control socket cannot move at a reload; it stays at \(controlSocket.quoted) until Baton restarts")
                }
                if let serving = machine.serving?.configuration, ControlAccess(configuration) != ControlAccess(serving) {
                    throw ConfigurationError(source: source.name, key: "control_group",
                                             problem: "who may use the control socket (control_group, control_readonly_group) cannot change at a reload; restart Baton to change it")
                }
                if let scaledTo = reloads.scaledTo { configuration.workers.count = scaledTo }
                if let strategy {
                    configuration.workers.strategy = strategy.strategy
                    if let batch = strategy.batch { configuration.workers.batch = batch }
                }
                let prepared = try sockets.prepare(configuration)
                feed(canary.map { .canaryConfigurationLoaded(prepared, $0) } ?? .configurationLoaded(prepared))
            } catch {
                feed(.configurationRejected("\(error)"))
            }
            }
        case .spawn(let worker, let configuration):
            spawn(worker, configuration)
        case .signal(let worker, let signal):
            guard let pid = workers.pid(of: worker) else { return }
            logger.info("sending \(SignalName.name(signal)) to worker \(worker)'s process group (pid \(pid))", metadata: LogMetadata.worker(worker, pid: pid))
            signalGroup(of: pid, signal)
        case .startTimer(let timer, let delay):
            if case .canaryHold = timer { canaryHoldEnds = Clock.monotonic() + Double(delay.components.seconds) }
            startTimer(.machine(timer), after: delay)
        case .cancelTimer(let timer):
            cancelTimer(.machine(timer))
        case .reportReload(let ids, let progress):
            if case .tookOver(let generation, _) = progress, let configuration = configuration(of: generation) {
                metrics?.apply(configuration.metrics)
            }
            if case .canaryServing(let generation, _, _, _, _) = progress, let configuration = configuration(of: generation) {
                canaryBaseline = CanaryBaseline(generation: generation, sockets.status(of: configuration.listeners))
            }
            report(progress, to: ids)
        case .announce(let announcement):
            var pid: pid_t?
            if case .workerExited(let worker, _, _) = announcement, let reaped, reaped.worker == worker { pid = reaped.pid }
            announcer.announce(announcement, pid: pid, statusLine: projection.line)
        case .retainSockets(let generations):
            sockets.retain(for: generations)
        case .steer(let generation, let slots):
            guard let configuration = configuration(of: generation) else { return }
            sockets.steer(generation: generation, slots: slots, configuration: configuration)
        case .steerAcross(let rotation):
            guard let newest = rotation.keys.max(), let configuration = configuration(of: newest) else { return }
            sockets.steer(rotation, configuration: configuration)
        case .awaitEmptySlot(let worker):
            guard sockets.hasOwnSockets(generation: worker.generation) else {
                feed(.slotQueuesEmpty(worker))
                return
            }
            departing.start(worker)
            startTimer(.slotQueues(worker), after: EmptyQueueWatch<WorkerID>.interval)
        case .evacuate(let generation, let slot):
            guard let configuration = configuration(of: generation) else { return }
            sockets.evacuate(generation: generation, slot: slot, configuration: configuration)
        case .awaitEmptyQueues(let generation):
            guard sockets.hasOwnSockets(generation: generation) else {
                feed(.queuesEmpty(generation: generation))
                return
            }
            leaving.start(generation)
            startTimer(.queues(generation: generation), after: EmptyQueueWatch<Int>.interval)
        case .runCanaryCheck(let worker, let check, let timeout):
            runCanaryCheck(check, against: worker, timeout: timeout)
        case .exit(let code, let reason):
            if let reason {
                logger.error("exiting: \(reason)")
            } else {
                logger.info("every worker has exited; exiting")
            }
            pendingExit = code
            exitIfDone()
        }
    }

    /// The worker's process group (the worker leads it), so that a wrapper that does not
    /// `exec` passes the signal on to its server; the worker alone when it left its group.
    private func signalGroup(of pid: pid_t, _ signal: Int32) {
        if getpgid(pid) != pid || Glibc.kill(-pid, signal) != 0 {
            Glibc.kill(pid, signal)
        }
        if signal != SIGKILL { drainedGroups.insert(pid) }
    }

    /// After a worker exited: what is left of its process group drains too, and gets
    /// SIGKILL at the end of the drain timeout.
    private func lingerIfNeeded(group: pid_t, of worker: WorkerID) {
        guard Glibc.kill(-group, 0) == 0 else {
            drainedGroups.remove(group)
            return
        }
        let settings = configuration(of: worker.generation)?.workers ?? WorkerConfiguration(command: [])
        if !drainedGroups.contains(group) {
            Glibc.kill(-group, settings.drainSignal)
        }
        logger.info("worker \(worker) exited, other processes of its group \(group) drain (at most \(DurationFormat.string(settings.drainTimeout)))")
        lingering[group] = worker
        startTimer(.lingering(group: group), after: settings.drainTimeout)
    }

    /// Exits once the machine is done and no worker's group lingers.
    private func exitIfDone() {
        guard let code = pendingExit else { return }
        guard lingering.isEmpty else {
            logger.info("waiting for the processes of \(lingering.count) exited worker(s)' groups")
            return
        }
        pendingExit = nil
        finished?.succeed(.exit(code))
    }

    private func configuration(of generation: Int) -> Configuration? {
        machine.generations.first { $0.number == generation }?.configuration
    }

    /// Feeds ``SupervisorEvent/queuesEmpty(generation:)`` once the leaving generation's
    /// sockets have settled empty; looks again meanwhile.
    private func lookAtQueues(of generation: Int) {
        guard machine.generations.contains(where: { $0.number == generation && $0.role == .leaving }) else {
            leaving.stop(generation)
            return
        }
        // Every worker thread's state is read from /proc only at what would be the last
        // look: it costs far more than the sockets' queues.
        let settled = sockets.ownSocketsAreEmpty(generation: generation)
            && (!leaving.isLastLook(at: generation)
                || machine.generations.first { $0.number == generation }?.workers.values.allSatisfy { worker in
                    workers.pid(of: worker.id).map(ProcessActivity.isWaiting) ?? true
                } ?? true)
        if leaving.looked(at: generation, empty: settled) {
            feed(.queuesEmpty(generation: generation))
        } else {
            startTimer(.queues(generation: generation), after: EmptyQueueWatch<Int>.interval)
        }
    }

    /// Feeds ``SupervisorEvent/slotQueuesEmpty(_:)`` once the sockets of the slot a
    /// rolling reload took from `worker` have settled empty and it waits; looks again meanwhile.
    private func lookAtSlotQueues(of worker: WorkerID) {
        guard machine.generations.first(where: { $0.number == worker.generation })?.retired[worker]?.state == .ready else {
            departing.stop(worker)
            return
        }
        let settled = sockets.ownSocketsAreEmpty(generation: worker.generation, slot: worker.slot)
            && (!departing.isLastLook(at: worker) || (workers.pid(of: worker).map(ProcessActivity.isWaiting) ?? true))
        if departing.looked(at: worker, empty: settled) {
            feed(.slotQueuesEmpty(worker))
        } else {
            startTimer(.slotQueues(worker), after: EmptyQueueWatch<WorkerID>.interval)
        }
    }

    /// Looks for stalls while the serving generation has a stall timeout, else never.
    private func watchForStalls() {
        guard let timeout = machine.serving?.configuration.workers.stallTimeout else {
            cancelTimer(.stalls)
            stalls = StallWatch()
            return
        }
        if !timers.isRunning(.stalls) {
            startTimer(.stalls, after: StallWatch.interval(for: timeout))
        }
    }

    /// Feeds ``SupervisorEvent/workerStalled(_:)`` for each ready serving worker whose
    /// steered sockets have held connections without it accepting one for the timeout.
    private func lookForStalls() {
        guard let serving = machine.serving, let timeout = serving.configuration.workers.stallTimeout else { return }
        let now = Clock.monotonic()
        var stalled: [WorkerID] = []
        for worker in serving.workers.values.sorted(by: { $0.id < $1.id }) where worker.state == .ready {
            let counts = sockets.acceptCounts(generation: serving.number, slot: worker.id.slot, configuration: serving.configuration)
            for count in counts where stalls.look(at: .init(worker: worker.id, listener: count.listener), steered: count.steered,
                                                  queued: count.queued, now: now, timeout: timeout) {
                stalled.append(worker.id)
                break
            }
        }
        stalls.keep(only: Set(serving.workers.values.map(\.id)))
        for worker in stalled {
            feed(.workerStalled(worker))
        }
        watchForStalls()
    }

    struct CanaryRefusal: Error {
        var reason: String
    }

    /// The canary a reload request asks for, checked against the service as it serves now.
    private func canary(_ request: ControlRequest) -> Result<Canary, CanaryRefusal> {
        guard let workers = request.canary else {
            return .failure(.init(reason: "\"weight\", \"hold\" and \"after\" are for a canary: give \"canary\", its number of workers"))
        }
        guard machine.phase == .running, machine.generations.count == 1, let serving = machine.serving else {
            return .failure(.init(reason: "a canary starts only while one generation serves alone; ask again once the reload under way is over"))
        }
        let count = serving.configuration.workers.count
        guard workers >= 1, workers < count else {
            return .failure(.init(reason: "a canary needs 1 to \(count - 1) workers (the service has \(count) slots), got \(workers)"))
        }
        let weight = request.weight ?? Canary.defaultWeight
        guard Canary.weights.contains(weight) else {
            return .failure(.init(reason: "a canary's weight is 1 to 99 percent, got \(weight)"))
        }
        var hold: Duration?
        if let text = request.hold {
            guard let duration = DurationFormat.parse(text), duration > .zero, duration <= Settings.longestDuration else {
                return .failure(.init(reason: "\"hold\" must be a duration such as \"5m\", more than 0 and at most 24h, got \"\(text)\""))
            }
            hold = duration
        }
        var after: Canary.After?
        if let text = request.after {
            guard let value = Canary.After(rawValue: text) else {
                return .failure(.init(reason: "\"after\" must be \"promote\" or \"rollback\", got \"\(text)\""))
            }
            guard hold != nil else {
                return .failure(.init(reason: "\"after\" needs a \"hold\": what happens at its end"))
            }
            after = value
        }
        return .success(Canary(workers: workers, weight: weight, hold: hold, after: after))
    }

    // MARK: - Workers

    private func spawn(_ worker: WorkerID, _ configuration: Configuration) {
        let notifySocket: NotifySocket
        let pid: pid_t
        do {
            notifySocket = try self.notifySocket(for: worker, configuration)
        } catch {
            feed(.workerExited(worker, .failedToStart("\(error)")))
            return
        }
        do {
            let sockets = try sockets.sockets(for: configuration, slot: worker.slot, generation: worker.generation)
            pid = try mainThread.perform { [launcher] in
                try launcher.launch(worker, configuration, sockets: sockets, notifyAddress: notifySocket.address)
            }
        } catch {
            notifySocket.close()
            feed(.workerExited(worker, .failedToStart("\(error)")))
            return
        }
        workers.add(worker, .init(pid: pid, started: Clock.monotonic(), notifySocket: notifySocket))
        logger.info("started worker \(worker) (pid \(pid))", metadata: LogMetadata.worker(worker, pid: pid))
        switch configuration.workers.readiness {
        case .notify:
            break
        case .delay(let delay):
            startTimer(.readinessDelay(worker), after: delay)
        case .exec:
            startTimer(.probe(worker), after: ReadinessProbe.firstRun)
        }
    }

    /// The worker's own `NOTIFY_SOCKET`, named after the worker in the private
    /// directory, so that it is the same again after an upgrade in place. A worker
    /// adopted from a Baton that had no directory keeps its abstract address.
    /// A worker that runs as another user owns its socket, and can pass through the directory.
    private func notifySocket(for worker: WorkerID, _ configuration: Configuration, abstract: Bool = false) throws(SystemError) -> NotifySocket {
        let address = abstract || notifyDirectory == nil ? "@baton/\(getpid())/\(worker)" : notifyDirectory!.address(of: worker)
        let owner = configuration.workers.credentials.map { (uid: $0.uid, gid: $0.gid) }
        if let owner, owner.uid != geteuid() {
            try notifyDirectory?.allowTraversal()
        }
        return try NotifySocket(address: address, owner: owner) { [self] sender, text in
            post(.notification(worker, sender: sender, text))
        }
    }

    private func runProbe(for worker: WorkerID) {
        guard let pid = workers.pid(of: worker), let generation = machine.generations.first(where: { $0.number == worker.generation }),
              case .exec(let command) = generation.configuration.workers.readiness else { return }
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let request = ReadinessProbe.request(command, for: worker, pid: pid, settings: generation.configuration.workers,
                                             environment: launcher.environment, output: devNull)
        do {
            workers.addProbe(try ProcessSpawner.spawn(request), for: worker)
        } catch {
            logger.warning("readiness probe for worker \(worker) could not start: \(error)", metadata: LogMetadata.worker(worker, pid: pid))
            startTimer(.probe(worker), after: ReadinessProbe.retryAfterSpawnFailure)
        }
    }

    /// One run of the canary's health check: `/bin/sh -c COMMAND` with the variables of
    /// the readiness probe, killed (with its process group) if it still runs after `timeout`.
    private func runCanaryCheck(_ check: CanaryCheck, against worker: WorkerID, timeout: Duration) {
        guard let pid = workers.pid(of: worker), let generation = machine.generations.first(where: { $0.number == worker.generation }) else {
            feed(.canaryCheckResult(generation: worker.generation, .failed("worker \(worker) is gone")))
            return
        }
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let request = ReadinessProbe.request(check.command, for: worker, pid: pid, settings: generation.configuration.workers,
                                             environment: launcher.environment, output: devNull)
        do {
            let run = try ProcessSpawner.spawn(request)
            workers.addCanaryCheck(run, for: worker)
            canaryChecks[run] = (timeout, false)
            startTimer(.canaryCheckDeadline(run), after: timeout)
        } catch {
            logger.warning("canary health check against worker \(worker) could not start: \(error)", metadata: LogMetadata.worker(worker, pid: pid))
            feed(.canaryCheckResult(generation: worker.generation, .failed("could not start: \(error)")))
        }
    }

    // MARK: - Upgrade in place

    /// Executes this program's file again in this process, keeping the pid, the sockets
    /// and the workers, which the new binary takes over (``resume(_:)``).
    private func upgrade(answering responder: ControlResponder) {
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
    private func resume(_ handover: UpgradeHandover) {
        for (id, pid) in handover.workerIDs {
            // The same address as before execve: the pid did not change.
            let socket = try? notifySocket(for: id, handover.configuration, abstract: handover.notifyDirectory == nil)
            workers.add(id, .init(pid: pid, started: Clock.monotonic(), notifySocket: socket))
        }
        feed(.resume(handover.configuration, generation: handover.generation, workers: handover.workerIDs.map(\.id)))
    }

    // MARK: - Timers

    private func startTimer(_ key: TimerKey, after delay: Duration) {
        timers.start(key, after: delay, on: eventLoop) { [self] key, token in handle(.timer(key, token: token)) }
    }

    private func cancelTimer(_ key: TimerKey) {
        timers.cancel(key)
    }

    // MARK: - Reports

    private func report(_ progress: ReloadProgress, to ids: [ReloadRequestID]) {
        guard !ids.isEmpty else { return }
        let replies = reloads.record(progress, for: ids, at: Clock.wallTime())
        announcer.reload(progress, id: ids[0], statusLine: projection.line)
        for (responder, reply) in replies {
            responder.send(reply)
        }
    }

    private var projection: StatusProjection {
        StatusProjection(machine: machine, workers: workers, reloads: reloads.history)
    }

    private func status() -> StatusReport {
        var report = projection.report(
            pid: getpid(), configurationName: source.name,
            listeners: sockets.status(of: machine.generations.last?.configuration.listeners ?? []),
            now: Clock.monotonic(), scaledTo: reloads.scaledTo, upgrades: upgrades, upgradeError: upgradeError,
            reloadStatistics: reloads.statistics, canaryHoldEnds: canaryHoldEnds, canaryBaseline: canaryBaseline)
        report.droppedOutputBytes = OutputWriter.droppedBytes
        return report
    }
}
