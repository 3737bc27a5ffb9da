/// What `batonctl status` shows: every generation, worker, listener and recent reload.
public struct StatusReport: Codable, Sendable, Equatable {
    public var pid: Int32
    /// `starting`, `running`, `reloading`, `stopping`.
    public var phase: String
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

    public init(pid: Int32, phase: String, configuration: String, command: [String],
                generations: [GenerationStatus], listeners: [ListenerStatus], reloads: [ReloadRecord],
                pendingReloads: Int, scaledTo: Int? = nil, upgrades: Int? = nil, upgradeError: String? = nil) {
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
    }

    public struct GenerationStatus: Codable, Sendable, Equatable {
        public var number: Int
        /// `starting`, `serving`, `draining`, `rolling-back`.
        public var role: String
        public var workers: [WorkerStatus]
        /// Slots waiting to be restarted after a crash.
        public var restartingSlots: [Int]
        public var crashLoopingSlots: [Int]

        public init(number: Int, role: String, workers: [WorkerStatus], restartingSlots: [Int], crashLoopingSlots: [Int]) {
            self.number = number
            self.role = role
            self.workers = workers
            self.restartingSlots = restartingSlots
            self.crashLoopingSlots = crashLoopingSlots
        }
    }

    public struct WorkerStatus: Codable, Sendable, Equatable {
        public var slot: Int
        /// Restarts of this slot within the generation.
        public var restarts: Int
        public var pid: Int32?
        /// `starting`, `ready`, `draining`, `killed`.
        public var state: String
        /// The worker's last `STATUS=` line.
        public var status: String?
        /// Seconds since the worker started.
        public var uptime: Double?

        public init(slot: Int, restarts: Int, pid: Int32?, state: String, status: String?, uptime: Double?) {
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
        public var reusePort: String
        public var sockets: [SocketStatus]

        public init(name: String, address: String, reusePort: String, sockets: [SocketStatus]) {
            self.name = name
            self.address = address
            self.reusePort = reusePort
            self.sockets = sockets
        }
    }

    public struct SocketStatus: Codable, Sendable, Equatable {
        /// Nil for a socket every slot shares.
        public var slot: Int?
        /// Connections waiting in the accept queue, and the queue's limit (TCP only).
        public var queued: UInt32?
        public var backlog: UInt32?

        public init(slot: Int?, queued: UInt32? = nil, backlog: UInt32? = nil) {
            self.slot = slot
            self.queued = queued
            self.backlog = backlog
        }
    }

    public struct ReloadRecord: Codable, Sendable, Equatable {
        /// Seconds since the epoch.
        public var started: Double
        public var finished: Double?
        /// `running`, `took-over`, `rolled-back`, `failed`.
        public var result: String
        public var message: String?
        public var generation: Int?

        public init(started: Double, finished: Double? = nil, result: String, message: String? = nil, generation: Int? = nil) {
            self.started = started
            self.finished = finished
            self.result = result
            self.message = message
            self.generation = generation
        }
    }
}
