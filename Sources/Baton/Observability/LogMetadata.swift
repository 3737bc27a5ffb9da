import Glibc
import Logging
import NIOConcurrencyHelpers

/// The metadata that says what a log line concerns: `generation`, `slot` and `pid` on a
/// worker's lines, and `reload` (the reload's id, that of its first request) on every
/// line logged from the start of a reload to its outcome, whichever part of Baton logs
/// it, and after the outcome on the lines of the generation it left to drain (the one it
/// replaced, or the one it rolled back) until that generation is gone.
public enum LogMetadata {
    private static let reloadUnderWay = NIOLockedValueBox<ReloadRequestID?>(nil)
    /// The reload that left each draining generation behind.
    private static let reloadOfGeneration = NIOLockedValueBox<[Int: ReloadRequestID]>([:])

    /// Gives every line the reload under way; for `LoggingSystem.bootstrap`.
    static let provider = Logger.MetadataProvider {
        reloadUnderWay.withLockedValue { $0 }.map { reload(id: $0) } ?? [:]
    }

    /// Sets the reload whose id every line carries from now on (none for nil).
    static func setReloadUnderWay(_ id: ReloadRequestID?) {
        reloadUnderWay.withLockedValue { $0 = id }
    }

    /// Notes a reload's outcome: the generation it replaced or rolled back drains under
    /// its id from now on.
    static func reloadEnded(_ id: ReloadRequestID, _ outcome: ReloadProgress) {
        reloadOfGeneration.withLockedValue { reloads in
            switch outcome {
            case .tookOver(let generation, let replaced):
                reloads[generation] = nil
                if let replaced { reloads[replaced] = id }
            case .rolledBack(let generation, _), .canceled(let generation, _):
                reloads[generation] = id
            default:
                break
            }
        }
    }

    /// Notes that `generation` has exited; call after its last line.
    static func generationGone(_ generation: Int) {
        reloadOfGeneration.withLockedValue { $0[generation] = nil }
    }

    static func reload(id: ReloadRequestID) -> Logger.Metadata {
        ["reload": .stringConvertible(id)]
    }

    static func generation(_ generation: Int) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["generation": .stringConvertible(generation)]
        if let id = reloadOfGeneration.withLockedValue({ $0[generation] }) { metadata["reload"] = .stringConvertible(id) }
        return metadata
    }

    static func worker(_ worker: WorkerID, pid: pid_t? = nil) -> Logger.Metadata {
        var metadata = generation(worker.generation)
        metadata["slot"] = .stringConvertible(worker.slot)
        if let pid { metadata["pid"] = .stringConvertible(pid) }
        return metadata
    }
}
