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
    private var askers: [ReloadRequestID: [Follower]] = [:]
    /// Askers told of the outcome who wait for a replaced generation's workers to exit.
    private var awaitingExit: [(asker: Asker, generation: Int, message: String)] = []
    private var nextID: ReloadRequestID = 1

    /// Someone who hears how a reload goes.
    private struct Follower {
        var asker: Asker
        var wait: ReloadWait
        /// A `rollback --wait`: the canary rolled back is its success.
        var rollingBack = false
    }

    /// A new reload request; `asker` (nil for `SIGHUP` and systemd) hears how it goes:
    /// every step when it waits, else only that its configuration was read and it began
    /// (or failed), or that it was queued.
    mutating func request(from asker: Asker?, wait: ReloadWait = .accepted) -> ReloadRequestID {
        let id = nextID
        nextID += 1
        if let asker {
            askers[id, default: []].append(Follower(asker: asker, wait: wait))
        }
        return id
    }

    mutating func request(from asker: Asker?, wait: Bool) -> ReloadRequestID {
        request(from: asker, wait: wait ? .outcome : .accepted)
    }

    /// `asker` hears the rest of the reload `ids` (a canary's, being promoted or rolled
    /// back), waiting as `wait` says; `rollingBack` when a rollback is its success.
    mutating func follow(_ ids: [ReloadRequestID], by asker: Asker, wait: ReloadWait, rollingBack: Bool) {
        guard let id = ids.first else { return }
        askers[id, default: []].append(Follower(asker: asker, wait: wait, rollingBack: rollingBack))
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
            case .failed(let reason), .configurationRejected(let reason):
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
            guard let followers = askers[id] else { continue }
            var staying: [Follower] = []
            for follower in followers {
                guard let reply = reply(to: follower, progress) else {
                    staying.append(follower)
                    continue
                }
                replies.append((follower.asker, reply))
                if !reply.final && !progress.isFinal { staying.append(follower) }
            }
            askers[id] = staying.isEmpty ? nil : staying
        }
        return replies
    }

    /// What `follower` hears of `progress`, if anything; a follower who waits for a
    /// generation to be gone moves to ``awaitingExit``.
    private mutating func reply(to follower: Follower, _ progress: ReloadProgress) -> ControlReply? {
        var reply = ControlReply(ok: true, final: progress.isFinal, message: progress.description)
        if case .tookOver(let generation, _) = progress { reply.generation = generation }
        let succeeded: Bool
        var gone: Int?
        switch progress {
        case .tookOver(_, let replaced) where !follower.rollingBack:
            succeeded = true
            gone = replaced
        case .rolledBack(let generation, _) where follower.rollingBack, .canceled(let generation, _) where follower.rollingBack:
            succeeded = true
            gone = generation
        case .canaryServing where follower.wait == .outcome:
            // A deploy script checks the canary and then promotes it: waiting for the
            // promotion here would never end. Who waits for the old generation to be gone
            // waits through the promotion (or the rollback).
            reply.final = true
            return reply
        default:
            succeeded = !progress.isFinal
        }
        if !succeeded {
            reply.ok = false
            reply.error = progress.description
            switch progress {
            case .rolledBack, .canceled: reply.failure = .rolledBack
            case .configurationRejected: reply.failure = .configuration
            default: reply.failure = .refused
            }
        } else if follower.wait == .accepted {
            // Without --wait, the answer is that the configuration was read and the
            // reload began, or that it waits its turn.
            if case .loadingConfiguration = progress { return nil }
            reply.final = true
        } else if reply.final, follower.wait == .drained, let gone {
            reply.final = false
            reply.message = "\(progress.description); waiting for generation \(gone) to exit"
            awaitingExit.append((follower.asker, gone, progress.description))
        }
        return reply
    }

    /// The final answers of askers who waited for a generation that `alive` says is gone.
    mutating func generationsGone(alive: (Int) -> Bool) -> [(Asker, ControlReply)] {
        var replies: [(Asker, ControlReply)] = []
        awaitingExit.removeAll { waiting in
            guard !alive(waiting.generation) else { return false }
            replies.append((waiting.asker, ControlReply(ok: true, final: true, message: "\(waiting.message); generation \(waiting.generation) has exited")))
            return true
        }
        return replies
    }
}

/// How long whoever asked for a reload waits for its answer.
enum ReloadWait: Sendable, Equatable {
    /// Until the reload is accepted.
    case accepted
    /// Until the new generation took over, or failed; with a canary, until it holds its share.
    case outcome
    /// Until the new generation took over and the replaced one's workers have exited, or
    /// it failed; with a canary, through its promotion (or rollback, a failure).
    case drained
}
