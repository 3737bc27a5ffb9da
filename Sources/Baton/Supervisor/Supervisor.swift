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
    }

    private let source: ConfigurationSource
    private let logger: Logger
    private var machine = SupervisorStateMachine()
    private let sockets: SocketTable
    private let systemd = SystemdNotifier()
    private let eventLoop: EventLoop
    /// What the main thread does next: exit with a code, or execute the new binary.
    enum Outcome {
        case exit(Int32)
        case upgrade(UpgradeHandover)
    }

    /// Made once nothing can fail before the loop runs.
    private var finished: EventLoopPromise<Outcome>?
    private let environment = ProcessSpawner.inheritedEnvironment()
    private var notifySockets: [WorkerID: NotifySocket] = [:]

    private var timers: [TimerKey: (token: UInt64, scheduled: Scheduled<Void>)] = [:]
    private var nextTimerToken: UInt64 = 0
    private var pids: [WorkerID: pid_t] = [:]
    private var workers: [pid_t: WorkerID] = [:]
    private var startTimes: [WorkerID: Double] = [:]
    private var probes: [pid_t: WorkerID] = [:]
    private var reloadAskers: [ReloadRequestID: (responder: ControlResponder, wait: Bool)] = [:]
    private var nextReloadID: ReloadRequestID = 1
    private var reloadHistory: [(firstID: ReloadRequestID, record: StatusReport.ReloadRecord)] = []
    /// Set by `batonctl scale`: the worker count of every configuration loaded from now on.
    private var scaledTo: Int?
    /// This program, as `batonctl upgrade` executes it again: the path it was started
    /// from, where the new binary is expected.
    private let executable = (try? FileContents.link("/proc/self/exe")) ?? CommandLine.arguments[0]
    private var upgrades = 0
    /// What the parent passed and an upgrade keeps (``descriptorsAtStart`` of the first Baton).
    private var descriptorsFromParent: [Int32] = []
    private var upgradeError: String?

    private init(source: ConfigurationSource, logger: Logger, eventLoop: EventLoop) {
        self.source = source
        self.logger = logger
        self.eventLoop = eventLoop
        sockets = SocketTable(logger: logger, systemd: systemd, inherited: .fromSystemd(logger: logger))
    }

    /// Blocks the signals Baton handles. Call it first thing in `main`, before any
    /// thread exists, so that no thread receives them the default way.
    public static func prepareProcess() {
        SignalWatcher.blockSignals()
        descriptorsAtStart = inheritableDescriptors()
    }

    /// Descriptors beyond 0–2 that Baton's parent left open on purpose (not
    /// close-on-exec), such as a pipe it watches to see Baton end: an upgrade in place
    /// keeps them, as the process they were given to lives on.
    nonisolated(unsafe) private static var descriptorsAtStart: [Int32] = []

    private static func inheritableDescriptors() -> [Int32] {
        var systemdRange = 0..<0
        if let pid = getenv("LISTEN_PID").flatMap({ pid_t(String(cString: $0)) }), pid == getpid(),
           let count = getenv("LISTEN_FDS").flatMap({ Int32(String(cString: $0)) }) {
            systemdRange = 3..<(3 + Int(count))
        }
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd > 2, fd != own, !systemdRange.contains(Int(fd)) else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { result.append(fd) }
        }
        return result
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
        descriptorsFromParent = handover?.descriptorsFromParent ?? Self.descriptorsAtStart
        if let handover {
            sockets.take(handover)
            configuration = handover.configuration
            scaledTo = handover.scaledTo
            upgrades = handover.upgrades
        } else {
            configuration = try sockets.prepare(source.load())
        }
        defer { sockets.closeAll() }
        let control = try ControlServer(path: configuration.controlSocket, eventLoop: eventLoop) { [self] request, responder in
            post(.control(request, responder))
        }
        defer { control.close() }
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
        while true {
            switch try finished.futureResult.wait() {
            case .exit(let code):
                try eventLoop.submit { [self] in
                    for timer in timers.values {
                        timer.scheduled.cancel()
                    }
                }.wait()
                return code
            case .upgrade(let handover):
                // From the main thread: an execve from another thread looks, to a parent
                // watching this process through a pidfd, like the process exiting.
                let error = ProcessSpawner.replaceProcess(
                    with: executable, keeping: handover.sockets.map(\.fd) + handover.descriptorsFromParent,
                    extraEnvironment: [UpgradeHandover.variable: handover.encoded()])
                finished = try eventLoop.submit { [self] in
                    upgradeError = "\(error)"
                    logger.error("upgrade failed, this Baton carries on: \(error)")
                    let next = eventLoop.makePromise(of: Outcome.self)
                    self.finished = next
                    return next
                }.wait()
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
                requestReload(answering: nil)
            case SIGTERM, SIGINT, SIGQUIT:
                logger.info("\(SignalName.name(signal)) received")
                feed(.stopRequested)
            default:
                logger.info("\(SignalName.name(signal)) ignored")
            }
        case .delivery(.childExited(let pid, let status)):
            childExited(pid, status: status)
        case .notification(let worker, let sender, let text):
            guard let pid = pids[worker] else { return }
            guard ProcessAncestry.belongs(sender, to: pid) else {
                logger.warning("notification for worker \(worker) from pid \(sender), outside its process tree, ignored")
                return
            }
            let message = NotifyMessage(text)
            if let status = message.status { feed(.workerStatus(worker, status)) }
            if message.ready { feed(.workerReady(worker)) }
            if message.stopping { feed(.workerStopping(worker)) }
        case .timer(let key, let token):
            guard timers[key]?.token == token else { return }
            timers[key] = nil
            switch key {
            case .machine(let timer):
                feed(.timerFired(timer))
            case .readinessDelay(let worker):
                if pids[worker] != nil { feed(.workerReady(worker)) }
            case .probe(let worker):
                runProbe(for: worker)
            }
        case .control(let request, let responder):
            switch request.command {
            case .status:
                responder.send(ControlReply(ok: true, final: true, status: status()))
            case .reload:
                requestReload(answering: (responder, request.wait ?? false))
            case .scale:
                guard let count = request.workers, WorkerConfiguration.countRange.contains(count) else {
                    let given = request.workers.map { "\($0)" } ?? "no \"workers\""
                    responder.send(.failure("scale: expected a number of workers from 1 to 1024, got \(given); nothing changed"))
                    return
                }
                logger.info("scaling to \(count) worker(s): reloading")
                scaledTo = count
                requestReload(answering: (responder, request.wait ?? false))
            case .upgrade:
                upgrade(answering: responder)
            case .stop:
                responder.send(ControlReply(ok: true, final: true, message: "stopping: draining every worker"))
                feed(.stopRequested)
            }
        }
    }

    // MARK: - Upgrade in place

    /// Why Baton cannot replace itself right now, or nil: only a settled service, one
    /// generation with every worker ready, hands over cleanly.
    private func upgradeRefusal() -> String? {
        guard machine.phase == .running, machine.generations.count == 1, let serving = machine.serving else {
            return "Baton is \(status().phase) with \(machine.generations.count) generation(s); upgrade once one generation serves alone"
        }
        if let worker = serving.workers.values.first(where: { $0.state != .ready }) {
            return "worker \(worker.id) is \(worker.state.rawValue); upgrade once every worker is ready"
        }
        if let slot = serving.restarting.first {
            return "slot \(slot) is restarting; upgrade once every worker is ready"
        }
        if serving.configuration.workers.output == .prefix {
            return "workers' output goes through Baton (output = \"prefix\"), which cannot be handed over yet"
        }
        guard access(executable, X_OK) == 0 else {
            return "\(executable) is not an executable file: \(SystemError.last("access"))"
        }
        return nil
    }

    /// Executes this program's file again in this process, keeping the pid, the sockets
    /// and the workers, which the new binary takes over (``resume(_:)``).
    private func upgrade(answering responder: ControlResponder) {
        if let refusal = upgradeRefusal() {
            responder.send(.failure("upgrade refused: \(refusal); nothing changed"))
            return
        }
        guard let serving = machine.serving else { return }
        upgradeError = nil
        let handedOver = sockets.handOver()
        let handover = UpgradeHandover(
            configuration: serving.configuration, generation: serving.number,
            workers: serving.workers.values.compactMap { worker in
                pids[worker.id].map { UpgradeHandover.Worker(slot: worker.id.slot, start: worker.id.start, pid: $0) }
            },
            sockets: handedOver.sockets, sharedInstead: handedOver.sharedInstead,
            descriptorsFromParent: descriptorsFromParent, scaledTo: scaledTo, upgrades: upgrades + 1)
        logger.notice("upgrading in place: executing \(executable)")
        responder.send(ControlReply(ok: true, final: true, message: "upgrading: baton \(getpid()) executes \(executable)")) { [self] in
            finished?.succeed(.upgrade(handover))
        }
    }

    /// Takes over what the replaced binary handed over, as generation `generation`.
    private func resume(_ handover: UpgradeHandover) {
        var resumed: [WorkerID] = []
        for worker in handover.workers {
            let id = WorkerID(generation: handover.generation, slot: worker.slot, start: worker.start)
            pids[id] = worker.pid
            workers[worker.pid] = id
            startTimes[id] = Clock.monotonic()
            // The same address as before execve: the pid did not change.
            notifySockets[id] = try? notifySocket(for: id)
            resumed.append(id)
        }
        feed(.resume(handover.configuration, generation: handover.generation, workers: resumed))
    }

    /// The worker's own `NOTIFY_SOCKET`, at an address made of Baton's pid and the
    /// worker, so that it is the same again after an upgrade in place.
    private func notifySocket(for worker: WorkerID) throws(SystemError) -> NotifySocket {
        try NotifySocket(address: "@baton/\(getpid())/\(worker)") { [self] sender, text in
            post(.notification(worker, sender: sender, text))
        }
    }

    private func requestReload(answering asker: (responder: ControlResponder, wait: Bool)?) {
        let id = nextReloadID
        nextReloadID += 1
        if let asker {
            reloadAskers[id] = asker
        }
        feed(.reloadRequested(id))
    }

    private func childExited(_ pid: pid_t, status: Int32) {
        if let worker = workers.removeValue(forKey: pid) {
            pids[worker] = nil
            notifySockets.removeValue(forKey: worker)?.close()
            startTimes[worker] = nil
            cancelTimer(.readinessDelay(worker))
            cancelTimer(.probe(worker))
            feed(.workerExited(worker, status < 0 ? .signaled(-status) : .exited(status)))
        } else if let worker = probes.removeValue(forKey: pid) {
            guard pids[worker] != nil else { return }
            if status == 0 {
                feed(.workerReady(worker))
            } else {
                startTimer(.probe(worker), after: .milliseconds(250))
            }
        } else {
            logger.debug("reaped pid \(pid) (an orphan), status \(status)")
        }
    }

    /// Events that actions produce wait here until every action of the event before
    /// them has been performed, so that effects happen in the order they were decided.
    private var queuedEvents: [SupervisorEvent] = []
    private var feeding = false

    private func feed(_ event: SupervisorEvent) {
        queuedEvents.append(event)
        guard !feeding else { return }
        feeding = true
        defer { feeding = false }
        while !queuedEvents.isEmpty {
            for action in machine.handle(queuedEvents.removeFirst()) {
                perform(action)
            }
        }
    }

    // MARK: - Actions

    private func perform(_ action: SupervisorAction) {
        switch action {
        case .loadConfiguration:
            do {
                var configuration = try source.load()
                if let scaledTo { configuration.workers.count = scaledTo }
                feed(.configurationLoaded(try sockets.prepare(configuration)))
            } catch {
                feed(.configurationRejected("\(error)"))
            }
        case .spawn(let worker, let configuration):
            spawn(worker, configuration)
        case .signal(let worker, let signal):
            guard let pid = pids[worker] else { return }
            logger.info("sending \(SignalName.name(signal)) to worker \(worker) (pid \(pid))")
            if signal == SIGKILL {
                // The whole process group, so that nothing the worker started survives it.
                Glibc.kill(-pid, SIGKILL)
            }
            Glibc.kill(pid, signal)
        case .startTimer(let timer, let delay):
            startTimer(.machine(timer), after: delay)
        case .cancelTimer(let timer):
            cancelTimer(.machine(timer))
        case .reportReload(let ids, let progress):
            report(progress, to: ids)
        case .announce(let announcement):
            announce(announcement)
        case .retainSockets(let configurations):
            sockets.retain(for: configurations)
        case .exit(let code, let reason):
            if let reason {
                logger.error("exiting: \(reason)")
            } else {
                logger.info("every worker has exited; exiting")
            }
            finished?.succeed(.exit(code))
        }
    }

    private func spawn(_ worker: WorkerID, _ configuration: Configuration) {
        let settings = configuration.workers
        let sockets = sockets.sockets(for: configuration, slot: worker.slot)
        var environment = self.environment.merging(settings.environment) { $1 }
        let listeners = sockets.compactMap { socket in configuration.listeners.first { $0.name == socket.name } }
        var preloadLibrary = ""
        if settings.socketProtocol == .preload {
            preloadLibrary = settings.preloadLibrary ?? PreloadLibrary.besideExecutable()
            guard access(preloadLibrary, R_OK) == 0 else {
                feed(.workerExited(worker, .failedToStart(
                    "the preload library \(preloadLibrary) cannot be read (\(String(cString: strerror(errno)))); set preload_library (--preload-library)")))
                return
            }
        }
        let handoff = SocketHandoff(
            settings.socketProtocol, command: settings.command, listeners: listeners,
            generation: worker.generation, slot: worker.slot, supervisorPID: getpid(),
            preloadLibrary: preloadLibrary, inheritedPreload: environment["LD_PRELOAD"], drainSignal: settings.drainSignal)
        environment.merge(handoff.environment) { $1 }
        let notifySocket: NotifySocket
        do {
            notifySocket = try self.notifySocket(for: worker)
        } catch {
            feed(.workerExited(worker, .failedToStart("\(error)")))
            return
        }
        environment[WorkerContract.Systemd.notifySocket] = notifySocket.address
        environment[WorkerContract.generation] = "\(worker.generation)"
        environment[WorkerContract.slot] = "\(worker.slot)"

        var request = ProcessSpawner.Request(
            command: handoff.command, environment: environment, directory: settings.directory,
            sockets: sockets.map(\.fd), setListenPID: handoff.setsListenPID)
        var writeEnds: [Int32] = []
        defer { writeEnds.forEach { _ = close($0) } }
        if settings.output == .prefix {
            do {
                let stdout = try OutputRelay.start(prefix: "\(worker)", target: STDOUT_FILENO)
                let stderr = try OutputRelay.start(prefix: "\(worker)", target: STDERR_FILENO)
                writeEnds = [stdout, stderr]
                (request.stdout, request.stderr) = (stdout, stderr)
            } catch {
                logger.warning("worker \(worker) output is not prefixed: \(error)")
            }
        }
        do {
            let pid = try ProcessSpawner.spawn(request)
            pids[worker] = pid
            workers[pid] = worker
            notifySockets[worker] = notifySocket
            startTimes[worker] = Clock.monotonic()
            logger.info("started worker \(worker) (pid \(pid))")
            switch settings.readiness {
            case .notify:
                break
            case .delay(let delay):
                startTimer(.readinessDelay(worker), after: delay)
            case .exec:
                startTimer(.probe(worker), after: .milliseconds(100))
            }
        } catch {
            notifySocket.close()
            feed(.workerExited(worker, .failedToStart(error.description)))
        }
    }

    private func runProbe(for worker: WorkerID) {
        guard let pid = pids[worker], let generation = machine.generations.first(where: { $0.number == worker.generation }),
              case .exec(let command) = generation.configuration.workers.readiness else { return }
        var environment = self.environment
        environment[WorkerContract.workerProcessID] = "\(pid)"
        environment[WorkerContract.generation] = "\(worker.generation)"
        environment[WorkerContract.slot] = "\(worker.slot)"
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let request = ProcessSpawner.Request(
            command: ["/bin/sh", "-c", command], environment: environment,
            directory: generation.configuration.workers.directory, stdout: devNull, stderr: devNull)
        do {
            probes[try ProcessSpawner.spawn(request)] = worker
        } catch {
            logger.warning("readiness probe for worker \(worker) could not start: \(error)")
            startTimer(.probe(worker), after: .seconds(1))
        }
    }

    // MARK: - Timers

    private func startTimer(_ key: TimerKey, after delay: Duration) {
        timers[key]?.scheduled.cancel()
        nextTimerToken += 1
        let token = nextTimerToken
        let scheduled = eventLoop.scheduleTask(in: .nanoseconds(delay.nanoseconds)) { [self] in
            handle(.timer(key, token: token))
        }
        timers[key] = (token, scheduled)
    }

    private func cancelTimer(_ key: TimerKey) {
        timers.removeValue(forKey: key)?.scheduled.cancel()
    }

    // MARK: - Reports

    private func report(_ progress: ReloadProgress, to ids: [ReloadRequestID]) {
        guard let firstID = ids.first else { return }
        switch progress {
        case .queued:
            break
        case .loadingConfiguration:
            logger.info("reload: \(progress)")
            systemd.reloading("reloading")
            reloadHistory.append((firstID, .init(started: Clock.wallTime(), result: .running)))
            if reloadHistory.count > 20 { reloadHistory.removeFirst() }
        default:
            if progress.isFinal {
                progress.succeeded ? logger.info("reload: \(progress)") : logger.error("reload: \(progress)")
            } else {
                logger.info("reload: \(progress)")
            }
        }
        if progress.isFinal, let index = reloadHistory.lastIndex(where: { $0.firstID == firstID }) {
            reloadHistory[index].record.finished = Clock.wallTime()
            reloadHistory[index].record.message = progress.description
            switch progress {
            case .tookOver(let generation, _):
                reloadHistory[index].record.result = .tookOver
                reloadHistory[index].record.generation = generation
            case .rolledBack(let generation, _):
                reloadHistory[index].record.result = .rolledBack
                reloadHistory[index].record.generation = generation
            default:
                reloadHistory[index].record.result = .failed
            }
            systemd.send("READY=1\nSTATUS=\(statusLine())")
        }

        for id in ids {
            guard let asker = reloadAskers[id] else { continue }
            var reply = ControlReply(ok: !progress.isFinal || progress.succeeded, final: progress.isFinal,
                                     message: progress.description)
            if case .tookOver(let generation, _) = progress { reply.generation = generation }
            if progress.isFinal && !progress.succeeded { reply.error = progress.description }
            if !asker.wait && !progress.isFinal {
                // Without --wait, the answer is that the reload was accepted.
                reply.final = true
            }
            asker.responder.send(reply)
            if reply.final { reloadAskers[id] = nil }
        }
    }

    private func announce(_ announcement: Announcement) {
        switch announcement {
        case .serving(let generation):
            logger.info("generation \(generation) serves")
            systemd.send("READY=1\nSTATUS=\(statusLine())")
        case .workerExited(let worker, let exit, let restartAfter):
            if let restartAfter {
                logger.warning("worker \(worker) \(exit); restarting in \(DurationFormat.string(restartAfter))")
            } else {
                logger.warning("worker \(worker) \(exit)")
            }
            systemd.send("STATUS=\(statusLine())")
        case .generationGone(let generation):
            logger.info("generation \(generation) has exited")
            systemd.send("STATUS=\(statusLine())")
        case .stopping:
            logger.info("stopping: draining every worker")
            systemd.send("STOPPING=1")
        }
    }

    /// One line for `STATUS=`: what serves, what drains, how the last reload went.
    private func statusLine() -> String {
        var parts: [String] = []
        if let serving = machine.serving {
            let ready = serving.workers.values.filter { $0.state == .ready }.count
            parts.append("generation \(serving.number): \(ready)/\(serving.configuration.workers.count) ready")
        }
        let draining = machine.generations.filter { $0.role == .draining }.reduce(0) { $0 + $1.workers.count }
        if draining > 0 { parts.append("\(draining) draining") }
        if let last = reloadHistory.last?.record, last.finished != nil {
            parts.append("last reload \(last.result)")
        }
        return parts.joined(separator: "; ")
    }

    private func status() -> StatusReport {
        let now = Clock.monotonic()
        let phase: StatusReport.Phase = switch machine.phase {
        case .idle, .starting: .starting
        case .running: .running
        case .loadingConfiguration, .reloading: .reloading
        case .stopping, .stopped: .stopping
        }
        let generations = machine.generations.map { generation in
            StatusReport.GenerationStatus(
                number: generation.number, role: .init(generation.role),
                workers: generation.workers.values.sorted { $0.id < $1.id }.map { worker in
                    StatusReport.WorkerStatus(
                        slot: worker.id.slot, restarts: worker.id.start, pid: pids[worker.id],
                        state: worker.announcedStopping && worker.state == .draining ? .stopping : .init(worker.state),
                        status: worker.status, uptime: startTimes[worker.id].map { now - $0 })
                },
                restartingSlots: generation.restarting.sorted(),
                crashLoopingSlots: (0..<generation.configuration.workers.count).filter { generation.isCrashLooping(slot: $0) })
        }
        let configuration = machine.generations.last?.configuration
        let listeners = (configuration?.listeners ?? []).map { listener in
            let keys = sockets.descriptors.keys.filter { $0.name == listener.name && $0.address == listener.address }
                .sorted { ($0.slot ?? -1) < ($1.slot ?? -1) }
            return StatusReport.ListenerStatus(
                name: listener.name, address: "\(listener.address)", reusePort: listener.reusePort,
                sockets: keys.map { key in
                    var socket = StatusReport.SocketStatus(slot: key.slot)
                    if case .tcp = key.address, let fd = sockets.descriptors[key],
                       let queue = ListenerSocket.acceptQueue(fd) {
                        socket.queued = queue.depth
                        socket.backlog = queue.capacity
                    }
                    return socket
                })
        }
        return StatusReport(
            pid: getpid(), phase: phase, configuration: source.name,
            command: configuration?.workers.command ?? [], generations: generations, listeners: listeners,
            reloads: reloadHistory.map(\.record), pendingReloads: machine.pendingReloads.count,
            scaledTo: scaledTo, upgrades: upgrades, upgradeError: upgradeError)
    }
}

enum Clock {
    static func monotonic() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    static func wallTime() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
