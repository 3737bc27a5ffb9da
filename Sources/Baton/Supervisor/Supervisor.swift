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

    /// What the main thread does next: exit with a code, or execute the new binary.
    enum Outcome {
        case exit(Int32)
        case upgrade(UpgradeHandover)
    }

    let source: ConfigurationSource
    let logger: Logger
    let eventLoop: EventLoop
    var machine = SupervisorStateMachine()
    let sockets: SocketTable
    let systemd = SystemdNotifier()
    let announcer: ServiceAnnouncer
    let launcher: WorkerLauncher
    var workers = WorkerTable()
    var reloads = ReloadLedger<ControlResponder>()
    var timers = TimerSchedule<TimerKey>()
    /// Generations out of rotation whose own sockets are watched until they settle empty.
    var settlingGenerations = EmptyQueueWatch<Int>()
    /// Departing workers whose slot's own sockets are watched until they settle empty.
    var settlingSlots = EmptyQueueWatch<WorkerID>()
    var canaryChecks = CanaryCheckRuns()
    var stalls = StallWatch()
    /// The generation whose `stall_timeout` was said to do nothing (no steered listener).
    var stallsUnwatchable: Int?
    /// Whether it was said that leaving workers' connections cannot be read (said once).
    var connectionsUnreadable = false
    /// Where the control server listens: a reload cannot move it.
    var controlSocket = ""
    /// Made once nothing can fail before the loop runs.
    var finished: EventLoopPromise<Outcome>?

    /// This program, as `batonctl upgrade` executes it again: the path it was started
    /// from, where the new binary is expected.
    let executable = (try? FileContents.link("/proc/self/exe")) ?? CommandLine.arguments[0]
    var upgrades = 0
    /// After an upgrade in place, the control requests that arrived before the handed-over
    /// workers were taken back: answered once they are, so that no status shows the
    /// upgrade done and no generation. Nil otherwise.
    var heldUntilResumed: [Input]?
    var upgradeError: String?
    /// The new binary, run on trial before it replaces this one.
    var upgradeTrial: UpgradeTrial?
    /// What the parent passed and every upgrade keeps.
    var descriptorsFromParent: [Int32] = []
    /// Where workers are forked, so that their parent-death signal outlives upgrades.
    let mainThread = MainThread()
    /// Process groups of exited workers that still have members, each killed at the end
    /// of its worker's drain timeout; Baton exits only once they are empty.
    var lingering: [pid_t: WorkerID] = [:]
    /// Groups that have had the drain signal already.
    var drainedGroups: Set<pid_t> = []
    /// The exit code, once Baton is done but for lingering groups.
    var pendingExit: Int32?
    /// Where the workers' notify sockets are.
    var notifyDirectory: NotifyDirectory?
    /// `/metrics`, at the serving configuration's address.
    var metrics: MetricsEndpoint?
    /// A stop was asked for (its `stop_delay` may still run): `/ready` answers 503.
    var stopBegan = false
    /// `batonctl stop --wait`s, answered when Baton exits.
    var stopWaiters: [ControlResponder] = []

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

    func run() throws -> Int32 {
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
        if handover != nil {
            try eventLoop.submit { [self] in heldUntilResumed = [] }.wait()
        }
        let control = try ControlServer(
            path: configuration.controlSocket, eventLoop: eventLoop, access: ControlAccess(configuration),
            logger: logger
        ) { [self] request, responder in
            post(.control(request, responder))
        }
        defer { control.close() }
        // Once the sockets and the control socket are set up: root's other capabilities
        // are of no use from here on (Capabilities).
        do {
            if let kept = try Capabilities.keepOnlyNeeded(for: configuration.workers) {
                logger.info(
                    "workers run as \(configuration.workers.user.map(\.name) ?? "?"): Baton keeps only \(kept.joined(separator: ", ")) of root's capabilities")
            }
        } catch {
            logger.warning("\(error); it keeps them")
        }
        try eventLoop.submit { [self] in controlSocket = control.path }.wait()
        let metrics = MetricsEndpoint(eventLoop: eventLoop, logger: logger, ready: { [self] in isReady }) { [self] in
            PrometheusText.render(status(), process: .ofThisProcess())
        }
        if handover == nil {
            try metrics.start(configuration.metrics)
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
            logger.info(
                "baton \(getpid()) upgraded in place to \(executable); generation \(handover.generation) serves on with \(handover.workers.count) worker(s); control socket \(control.path)"
            )
            eventLoop.execute { [self] in resume(handover) }
            // Bound on the event loop after `resume` has run: no scrape sees the generation
            // table empty, nor /ready say that nothing serves, before the workers are back.
            do {
                try metrics.start(configuration.metrics)
            } catch {
                // The workers serve on: an upgrade does not fail for want of its metrics port.
                logger.error("metrics endpoint not started after the upgrade: \(error)")
            }
        } else {
            logger.info(
                "baton \(getpid()) starting \(configuration.workers.count) worker(s) of \(configuration.workers.command.joined(separator: " ")); control socket \(control.path)"
            )
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
                finished = try execute(handover)
            }
        }
    }

    /// Hands an input to the event loop; callable from any thread.
    func post(_ input: Input) {
        eventLoop.execute { [self] in handle(input) }
    }

    // MARK: - Inputs

    func handle(_ input: Input) {
        eventLoop.assertInEventLoop()
        switch input {
        case .delivery(.signal(let signal)):
            switch signal {
            case SIGHUP:
                feed(.reloadRequested(reloads.request(from: nil)))
            case SIGTERM, SIGINT, SIGQUIT:
                logger.info("\(SignalName.name(signal)) received")
                beginStop()
            default:
                logger.info("\(SignalName.name(signal)) ignored")
            }
        case .delivery(.childExited(let pid, let status)):
            childExited(pid, status: status)
        case .notification(let worker, let sender, let text):
            notification(text, for: worker, from: sender)
        case .timer(let key, let token):
            guard timers.take(key, token: token) else { return }
            timerFired(key)
        case .control(let request, let responder):
            if heldUntilResumed != nil {
                heldUntilResumed?.append(input)
                return
            }
            control(request, responder)
        }
    }

    // MARK: - The state machine

    /// Events that actions produce wait here until every action of the event before
    /// them has been performed, so that effects happen in the order they were decided.
    private var queuedEvents: [SupervisorEvent] = []
    /// The worker whose exit is being fed, for the pid on the line that announces it.
    var reaped: (worker: WorkerID, pid: pid_t)?
    private var feeding = false

    func feed(_ event: SupervisorEvent) {
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
            perform(actions)
        }
        watchForStalls()
        for (responder, reply) in reloads.generationsGone(alive: { machine.generation($0) != nil }) {
            responder.send(reply)
        }
    }

    func perform(_ actions: [SupervisorAction]) {
        for step in SupervisorStep.steps(actions) {
            switch step {
            case .perform(let action): perform(action)
            case .start(let starts): spawn(starts)
            }
        }
    }

    func perform(_ action: SupervisorAction) {
        switch action {
        case .loadConfiguration(let options):
            loadConfiguration(options)
        case .spawn(let worker, let configuration):
            // Not reached from `perform(_ actions:)`, whose steps start workers together.
            spawn([.init(worker: worker, configuration: configuration)])
        case .signal(let worker, let signal):
            guard let pid = workers.pid(of: worker) else { return }
            logger.info("sending \(SignalName.name(signal)) to worker \(worker)'s process group (pid \(pid))", metadata: LogMetadata.worker(worker, pid: pid))
            signalGroup(of: pid, signal)
        case .startTimer(let timer, let delay):
            startTimer(.machine(timer), after: delay)
        case .cancelTimer(let timer):
            cancelTimer(.machine(timer))
        case .reportReload(let ids, let progress):
            report(progress, to: ids)
        case .announce(let announcement):
            var pid: pid_t?
            if case .workerExited(let worker, _, _) = announcement, let reaped, reaped.worker == worker { pid = reaped.pid }
            announcer.announce(announcement, pid: pid, statusLine: projection.line)
        case .retainSockets(let generations):
            sockets.retain(for: generations)
        case .steer(let rotation):
            guard let newest = rotation.keys.max(), let configuration = configuration(of: newest) else { return }
            sockets.steer(rotation, configuration: configuration)
        case .awaitEmptySlot(let worker):
            awaitEmptySlot(worker)
        case .evacuate(let generation, let slot, let forNextWorker):
            guard let configuration = configuration(of: generation) else { return }
            sockets.evacuate(generation: generation, slot: slot, configuration: configuration, listenAgain: forNextWorker)
        case .awaitEmptyQueues(let generation):
            awaitEmptyQueues(generation)
        case .runCanaryCheck(let worker, let check, let timeout):
            runCanaryCheck(check, against: worker, timeout: timeout)
        case .measureCanary(let generation):
            let listeners = configuration(of: generation).map { sockets.status(of: $0.listeners) } ?? []
            feed(.canaryMeasured(generation: generation, at: Clock.monotonic(), steered: StatusProjection.steered(listeners)))
        case .exit(let code, let reason):
            exit(code, reason: reason)
        }
    }

    func configuration(of generation: Int) -> Configuration? {
        machine.generation(generation)?.configuration
    }
}
