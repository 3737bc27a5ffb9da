/// What `batonctl status` shows: every generation, worker, listener and recent reload.
public struct StatusReport: Codable, Sendable, Equatable {
    public var pid: Int32
    public var phase: Phase
    /// The configuration file, or "command line".
    public var configuration: String
    public var command: [String]
    public var generations: [GenerationStatus]
    public var listeners: [ListenerStatus]
    /// Most recent last.
    public var reloads: [ReloadRecord]
    public var pendingReloads: Int
    /// The worker count set by `batonctl scale`, which every reload uses instead of the
    /// configuration's; nil when none was set.
    public var scaledTo: Int?
    /// How often this Baton replaced its own binary (`batonctl upgrade`), and why the
    /// last attempt failed, if it did.
    public var upgrades: Int?
    public var upgradeError: String?
    /// Bytes of worker output (`output = "prefix"`) dropped because Baton's own output
    /// was not read fast enough; nil from a Baton that does not count them.
    public var droppedOutputBytes: Int?
    /// Every reload finished since Baton started; nil from a Baton that did not count them.
    public var reloadStatistics: ReloadStatistics?
    /// The rolling reload under way (forward, or back after a failed batch); nil when none is.
    public var rollout: RolloutStatus?

    public init(
        pid: Int32, phase: Phase, configuration: String, command: [String],
        generations: [GenerationStatus], listeners: [ListenerStatus], reloads: [ReloadRecord],
        pendingReloads: Int, scaledTo: Int? = nil, upgrades: Int? = nil, upgradeError: String? = nil,
        reloadStatistics: ReloadStatistics? = nil
    ) {
        self.pid = pid
        self.phase = phase
        self.configuration = configuration
        self.command = command
        self.generations = generations
        self.listeners = listeners
        self.reloads = reloads
        self.pendingReloads = pendingReloads
        self.scaledTo = scaledTo
        self.upgrades = upgrades
        self.upgradeError = upgradeError
        self.reloadStatistics = reloadStatistics
    }

    /// What Baton as a whole is doing.
    public enum Phase: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
        case starting, running, reloading, stopping

        public var description: String { rawValue }
    }

    public struct GenerationStatus: Codable, Sendable, Equatable {
        /// What a generation is for now.
        public enum Role: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
            /// Its workers are starting; it does not serve yet.
            case starting
            case serving
            /// A canary: some of its workers take a share of new connections beside the
            /// serving generation, until promoted or rolled back.
            case canary
            /// Replaced by a newer generation and out of rotation: its workers accept
            /// what its sockets hold, then drain.
            case leaving
            /// Told to stop: replaced by a newer generation, or Baton is stopping.
            case draining
            /// It failed to start and is being stopped.
            case rollingBack = "rolling-back"

            public var description: String { rawValue }
        }

        public var number: Int
        public var role: Role
        public var workers: [WorkerStatus]
        /// Slots waiting to be restarted after a crash.
        public var restartingSlots: [Int]
        public var crashLoopingSlots: [Int]
        /// Each slot of `restartingSlots`: why and when it starts again.
        public var slotRestarts: [SlotRestart]?

        public init(
            number: Int, role: Role, workers: [WorkerStatus], restartingSlots: [Int], crashLoopingSlots: [Int],
            slotRestarts: [SlotRestart]? = nil
        ) {
            self.number = number
            self.role = role
            self.workers = workers
            self.restartingSlots = restartingSlots
            self.crashLoopingSlots = crashLoopingSlots
            self.slotRestarts = slotRestarts
        }
    }

    /// A slot whose worker crashed, waiting to start again.
    public struct SlotRestart: Codable, Sendable, Equatable {
        public var slot: Int
        /// Restarts of the slot so far.
        public var restarts: Int
        /// Crashes in a row.
        public var crashes: Int
        /// How its last worker ended: its exit status or signal, and its last lines on
        /// standard error when Baton read them.
        public var lastExit: String?
        /// Seconds until its next worker starts.
        public var nextStartIn: Double?

        public init(slot: Int, restarts: Int, crashes: Int, lastExit: String?, nextStartIn: Double?) {
            self.slot = slot
            self.restarts = restarts
            self.crashes = crashes
            self.lastExit = lastExit
            self.nextStartIn = nextStartIn
        }
    }

    public struct WorkerStatus: Codable, Sendable, Equatable {
        /// Where a worker is in its life.
        public enum State: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
            /// Started, not ready yet.
            case starting
            case ready
            /// Told to drain.
            case draining
            /// Draining, and it said `STOPPING=1`.
            case stopping
            /// Sent `SIGKILL` (the drain timeout passed).
            case killed

            public var description: String { rawValue }
        }

        public var slot: Int
        /// Restarts of this slot within the generation.
        public var restarts: Int
        public var pid: Int32?
        public var state: State
        /// The worker's last `STATUS=` line.
        public var status: String?
        /// Seconds since the worker started.
        public var uptime: Double?

        public init(slot: Int, restarts: Int, pid: Int32?, state: State, status: String?, uptime: Double?) {
            self.slot = slot
            self.restarts = restarts
            self.pid = pid
            self.state = state
            self.status = status
            self.uptime = uptime
        }
    }

    public struct ListenerStatus: Codable, Sendable, Equatable {
        public var name: String
        public var address: String
        public var reusePort: ReusePortMode
        public var sockets: [SocketStatus]
        /// A UDP listener's `flows` (`none`, `tuple` or `quic`), when steered.
        public var flows: String?
        /// With flows: how many datagrams the steering program steered by each decision.
        public var flowDecisions: FlowDecisions?

        public init(
            name: String, address: String, reusePort: ReusePortMode, sockets: [SocketStatus], flows: String? = nil,
            flowDecisions: FlowDecisions? = nil
        ) {
            self.name = name
            self.address = address
            self.reusePort = reusePort
            self.sockets = sockets
            self.flows = flows
            self.flowDecisions = flowDecisions
        }
    }

    /// What the steering program did with the datagrams of a UDP listener with flows
    /// (Docs/steering.md, "UDP flows").
    public struct FlowDecisions: Codable, Sendable, Equatable {
        /// To the socket a QUIC cookie named.
        public var cookie: UInt64
        /// To the socket a known flow was recorded for.
        public var flow: UInt64
        /// To the rotation, as a new flow.
        public var new: UInt64
        /// To the rotation, because the socket of a known flow or cookie had closed.
        public var fallback: UInt64

        public init(cookie: UInt64, flow: UInt64, new: UInt64, fallback: UInt64) {
            self.cookie = cookie
            self.flow = flow
            self.new = new
            self.fallback = fallback
        }
    }

    public struct SocketStatus: Codable, Sendable, Equatable {
        /// Nil for a socket every slot shares.
        public var slot: Int?
        /// The generation whose own socket this is; nil for a socket generations share.
        public var generation: Int?
        /// For a steered listener: whether the socket takes new connections.
        public var inRotation: Bool?
        /// Connections waiting in the accept queue, and the queue's limit (TCP only).
        public var queued: UInt32?
        public var backlog: UInt32?
        /// For a steered listener: how many new connections (datagrams, for UDP) the
        /// steering program has given the socket, migrated ones included.
        public var steered: UInt64?
        /// For a UDP listener with flows: how many flows the flow table holds for the socket.
        public var flows: UInt64?

        public init(
            slot: Int?, generation: Int? = nil, inRotation: Bool? = nil, queued: UInt32? = nil, backlog: UInt32? = nil,
            steered: UInt64? = nil, flows: UInt64? = nil
        ) {
            self.flows = flows
            self.slot = slot
            self.generation = generation
            self.inRotation = inRotation
            self.queued = queued
            self.backlog = backlog
            self.steered = steered
        }
    }

    public struct ReloadRecord: Codable, Sendable, Equatable {
        /// How a reload ended, or `running` while it runs.
        public enum Outcome: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
            case running
            /// The new generation serves.
            case tookOver = "took-over"
            /// The new generation failed; the previous one serves on.
            case rolledBack = "rolled-back"
            /// A canary rolled back as planned (`batonctl rollback`, or the end of a hold
            /// with `after = "rollback"`): nothing failed; the previous generation serves on.
            case canceled
            /// Nothing was started, such as for a configuration that does not load.
            case failed

            public var description: String { rawValue }
        }

        /// Seconds since the epoch.
        public var started: Double
        public var finished: Double?
        public var result: Outcome
        public var message: String?
        /// Why a reload that did not take over failed.
        public var reason: String?
        public var generation: Int?

        public init(started: Double, finished: Double? = nil, result: Outcome, message: String? = nil, generation: Int? = nil) {
            self.started = started
            self.finished = finished
            self.result = result
            self.message = message
            self.generation = generation
        }
    }
}

extension StatusReport {
    /// A rolling reload: generation `to` takes generation `from`'s slots, `batch` at a time.
    public struct RolloutStatus: Codable, Sendable, Equatable {
        public var from: Int
        public var to: Int
        public var batch: Int
        /// Slots whose socket in rotation is generation `to`'s, in the order they were replaced.
        public var replacedSlots: [Int]
        /// The slots of the batch under way, whose workers are starting.
        public var batchSlots: [Int]
        /// Why the rollout goes back, once a batch failed: the replaced slots return to `from`.
        public var rollingBack: String?
        /// The canary that holds or starts, if the reload is one.
        public var canary: CanaryStatus?

        /// A canary: `workers` workers of generation `to` take about `weight` percent of new connections.
        public struct CanaryStatus: Codable, Sendable, Equatable {
            public var workers: Int
            public var weight: Int
            /// The canary's slots in rotation; empty while its workers start.
            public var slots: [Int]
            /// Seconds left in the hold, once the canary serves; nil without a hold.
            public var holdLeft: Double?
            /// `promote` or `rollback` at the end of the hold.
            public var after: String?
            /// Since the canary took its share: the new connections (datagrams, for UDP)
            /// the steering program gave each generation's sockets, old generation first;
            /// nil while the canary starts, or without steering.
            public var connections: [GenerationConnections]?

            public init(
                workers: Int, weight: Int, slots: [Int], holdLeft: Double? = nil, after: String? = nil,
                connections: [GenerationConnections]? = nil
            ) {
                self.workers = workers
                self.weight = weight
                self.slots = slots
                self.holdLeft = holdLeft
                self.after = after
                self.connections = connections
            }
        }

        /// How many new connections one generation got since the canary took its share,
        /// and its share of all of them (0...1; 0 while there are none).
        public struct GenerationConnections: Codable, Sendable, Equatable {
            public var generation: Int
            public var connections: UInt64
            public var share: Double

            public init(generation: Int, connections: UInt64, share: Double) {
                self.generation = generation
                self.connections = connections
                self.share = share
            }

            /// Each generation's count with its share of the total, in the order given.
            public static func shares(_ counts: [(generation: Int, connections: UInt64)]) -> [GenerationConnections] {
                let total = counts.reduce(0) { $0 + $1.connections }
                return counts.map {
                    GenerationConnections(
                        generation: $0.generation, connections: $0.connections,
                        share: total == 0 ? 0 : Double($0.connections) / Double(total))
                }
            }
        }

        public init(
            from: Int, to: Int, batch: Int, replacedSlots: [Int], batchSlots: [Int], rollingBack: String? = nil,
            canary: CanaryStatus? = nil
        ) {
            self.from = from
            self.to = to
            self.batch = batch
            self.replacedSlots = replacedSlots
            self.batchSlots = batchSlots
            self.rollingBack = rollingBack
            self.canary = canary
        }
    }
}
