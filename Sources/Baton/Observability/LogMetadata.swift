import Glibc
import Logging
import NIOConcurrencyHelpers

/// The metadata that says what a log line concerns: `generation`, `slot` and `pid` on a
/// worker's lines, and `reload` (the reload's id, that of its first request) on every
/// line logged from the start of a reload to its outcome, whichever part of Baton logs it.
public enum LogMetadata {
    private static let reloadUnderWay = NIOLockedValueBox<ReloadRequestID?>(nil)

    /// Gives every line the reload under way; for `LoggingSystem.bootstrap`.
    public static let provider = Logger.MetadataProvider {
        reloadUnderWay.withLockedValue { $0 }.map { reload(id: $0) } ?? [:]
    }

    /// Sets the reload whose id every line carries from now on (none for nil).
    static func setReloadUnderWay(_ id: ReloadRequestID?) {
        reloadUnderWay.withLockedValue { $0 = id }
    }

    static func reload(id: ReloadRequestID) -> Logger.Metadata {
        ["reload": .stringConvertible(id)]
    }

    static func worker(_ worker: WorkerID, pid: pid_t? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["generation": .stringConvertible(worker.generation), "slot": .stringConvertible(worker.slot)]
        if let pid { metadata["pid"] = .stringConvertible(pid) }
        return metadata
    }
}
