import Glibc

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a Baton hands to the new binary it executes in its own place (`batonctl
/// upgrade`): the serving generation, its workers (still this process's children, as
/// the pid does not change) and every listening socket, left open across `execve`.
/// It travels in one environment variable, which the new Baton reads and clears.
struct UpgradeHandover: Codable {
    struct Socket: Codable {
        var name: String
        var address: ListenerAddress
        var reusePort: ReusePortMode
        var slot: Int?
        var generation: Int?
        var fd: Int32
        var adopted: Bool
    }

    struct Worker: Codable {
        var slot: Int
        var start: Int
        var pid: pid_t
    }

    /// A steered listener's program and maps (``SteeringGroup``), by descriptor.
    struct Steering: Codable {
        var address: ListenerAddress
        var program: Int32
        var sockets: Int32
        var rotation: Int32
        var count: Int32
        var counters: Int32
        var capacity: UInt32
        /// The maps of UDP flows; missing from a handover by a Baton without them, whose
        /// program then keeps steering without flows.
        var settings: Int32?
        var flows: Int32?
        var tags: Int32?
        var cookies: Int32?
        var decisions: Int32?
        var flowCapacity: UInt32?

        var descriptors: [Int32] {
            [program, sockets, rotation, count, counters] + [settings, flows, tags, cookies, decisions].compactMap { $0 }
        }
    }

    var configuration: Configuration
    var generation: Int
    var workers: [Worker]
    var sockets: [Socket]
    /// `per-worker` listeners that run `shared` on a socket from systemd.
    var sharedInstead: [ListenerAddress]
    /// Missing from a handover by a Baton from before steering was handed over.
    var steering: [Steering]?
    /// Descriptors Baton's parent passed, kept open across every upgrade.
    var descriptorsFromParent: [Int32]
    var scaledTo: Int?
    /// In-place upgrades so far, this one included.
    var upgrades: Int
    /// Where the workers' notify sockets are; nil from a Baton that used abstract ones.
    var notifyDirectory: NotifyDirectory?
    /// The reload counters, so that /metrics' counters do not start again; nil from an
    /// older Baton.
    var reloadStatistics: StatusReport.ReloadStatistics?

    static let variable = "BATON_UPGRADE_HANDOVER"

    /// What Baton hands over of the generation `serving`, whose workers' pids are in `workers`.
    init(
        _ serving: SupervisorStateMachine.Generation, workers: WorkerTable,
        sockets: (sockets: [Socket], sharedInstead: [ListenerAddress], steering: [Steering]),
        descriptorsFromParent: [Int32], scaledTo: Int?, upgrades: Int, notifyDirectory: NotifyDirectory?,
        reloadStatistics: StatusReport.ReloadStatistics? = nil
    ) {
        configuration = serving.configuration
        generation = serving.number
        self.workers = serving.workers.values.sorted { $0.id < $1.id }.compactMap { worker in
            workers.pid(of: worker.id).map { Worker(slot: worker.id.slot, start: worker.id.start, pid: $0) }
        }
        self.sockets = sockets.sockets
        sharedInstead = sockets.sharedInstead
        steering = sockets.steering
        self.descriptorsFromParent = descriptorsFromParent
        self.scaledTo = scaledTo
        self.upgrades = upgrades
        self.notifyDirectory = notifyDirectory
        self.reloadStatistics = reloadStatistics
    }

    /// The descriptors of the handed-over steering programs and maps.
    var steeringDescriptors: [Int32] {
        (steering ?? []).flatMap(\.descriptors)
    }

    /// The handed-over workers as the new Baton names them.
    var workerIDs: [(id: WorkerID, pid: pid_t)] {
        workers.map { (WorkerID(generation: generation, slot: $0.slot, start: $0.start), $0.pid) }
    }

    /// The handover left by the Baton this process was before `execve`, if any.
    static func take() throws -> UpgradeHandover? {
        guard let text = getenv(variable).map({ String(cString: $0) }) else { return nil }
        unsetenv(variable)
        return try JSONDecoder().decode(UpgradeHandover.self, from: Data(text.utf8))
    }

    func encoded() -> String {
        String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self)
    }
}
