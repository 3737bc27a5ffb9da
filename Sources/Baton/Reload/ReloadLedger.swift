/// The supervisor's side of reload requests, which the state machine knows only by
/// their ids: who asked for each one and whether they wait for the outcome, how recent
/// reloads went, and the worker count set by `batonctl scale`. Pure: the replies it
/// decides on are returned, and the supervisor sends them.
struct ReloadLedger<Asker> {
    /// How many reloads `status` remembers.
    static var historyLimit: Int { 20 }

    /// The worker count of every configuration loaded from now on, once `batonctl scale` set one.
    var scaledTo: Int?
    /// Most recent last.
    var history: [StatusReport.ReloadRecord] { entries.map(\.record) }
    /// Every reload finished so far, for the reload counters and duration histogram
    /// (kept across `batonctl upgrade`).
    var statistics = StatusReport.ReloadStatistics()

    private var entries: [(firstID: ReloadRequestID, record: StatusReport.ReloadRecord, hold: CanaryHold)] = []

    /// How long a reload's canary held: the hold is the operator's time, not the
    /// reload's, so it is not part of the reload's duration.
    struct CanaryHold {
        var began: Double?
        var held: Double = 0

        mutating func end(at time: Double) {
            if let began { held += max(0, time - began) }
            began = nil
        }
    }
    private var askers: [ReloadRequestID: (asker: Asker, wait: Bool)] = [:]
    private var nextID: ReloadRequestID = 1

    /// A new reload request; `asker` (nil for `SIGHUP` and systemd) hears how it goes:
    /// every step when it `wait`s, else only that it was accepted.
    mutating func request(from asker: Asker?, wait: Bool = false) -> ReloadRequestID {
        let id = nextID
        nextID += 1
        if let asker {
            askers[id] = (asker, wait)
        }
        return id
    }

    /// Records how the reloads `ids` (collapsed into one) are going, at `time` seconds
    /// since the epoch, and returns the replies their askers get.
    mutating func record(_ progress: ReloadProgress, for ids: [ReloadRequestID], at time: Double) -> [(Asker, ControlReply)] {
        guard let firstID = ids.first else { return [] }
        if case .loadingConfiguration = progress {
            entries.append((firstID, .init(started: time, result: .running), CanaryHold()))
            if entries.count > Self.historyLimit { entries.removeFirst() }
        }
        if let index = entries.lastIndex(where: { $0.firstID == firstID }) {
            switch progress {
            case .canaryServing: entries[index].hold.began = time
            case .promoted: entries[index].hold.end(at: time)
            default: break
            }
        }
        if progress.isFinal, let index = entries.lastIndex(where: { $0.firstID == firstID }) {
            entries[index].hold.end(at: time)
            entries[index].record.finished = time
            entries[index].record.message = progress.description
            switch progress {
            case .tookOver(let generation, _):
                entries[index].record.result = .tookOver
                entries[index].record.generation = generation
            case .rolledBack(let generation, let reason):
                entries[index].record.result = .rolledBack
                entries[index].record.generation = generation
                entries[index].record.reason = reason
            case .canceled(let generation, let reason):
                entries[index].record.result = .canceled
                entries[index].record.generation = generation
                entries[index].record.reason = reason
            case .failed(let reason):
                entries[index].record.result = .failed
                entries[index].record.reason = reason
            default:
                entries[index].record.result = .failed
            }
            let record = entries[index].record
            statistics.record(record.result, seconds: max(0, time - record.started - entries[index].hold.held))
        }
        var replies: [(Asker, ControlReply)] = []
        for id in ids {
            guard let (asker, wait) = askers[id] else { continue }
            var reply = ControlReply(
                ok: !progress.isFinal || progress.succeeded, final: progress.isFinal,
                message: progress.description)
            if case .tookOver(let generation, _) = progress { reply.generation = generation }
            if progress.isFinal && !progress.succeeded { reply.error = progress.description }
            if !wait && !progress.isFinal {
                // Without --wait, the answer is that the reload was accepted.
                reply.final = true
            }
            replies.append((asker, reply))
            if reply.final { askers[id] = nil }
        }
        return replies
    }
}
