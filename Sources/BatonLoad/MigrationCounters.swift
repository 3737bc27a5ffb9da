import Foundation

/// The kernel's count of connections moved off a closing (or shut down) listener to
/// another socket of its reuseport group, and of those it could not move (reset):
/// `TCPMigrateReqSuccess` and `TCPMigrateReqFailure` of the calling thread's network
/// namespace. Both only grow; compare two readings.
public struct MigrationCounters: Sendable, Equatable {
    public var success: Int
    public var failure: Int

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    public static func read() throws -> MigrationCounters {
        let path = "/proc/thread-self/net/netstat"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Unavailable(description: "cannot read \(path)")
        }
        let lines = text.split(separator: "\n")
        guard let names = lines.first(where: { $0.hasPrefix("TcpExt:") }),
            let values = lines.last(where: { $0.hasPrefix("TcpExt:") })
        else {
            throw Unavailable(description: "no TcpExt lines in \(path)")
        }
        let counters = Dictionary(
            zip(names.split(separator: " "), values.split(separator: " ").map { Int($0) ?? 0 }),
            uniquingKeysWith: { $1 })
        guard let success = counters["TCPMigrateReqSuccess"], let failure = counters["TCPMigrateReqFailure"] else {
            throw Unavailable(description: "no TCPMigrateReq counters in \(path) (Linux 5.14 or later has them)")
        }
        return MigrationCounters(success: success, failure: failure)
    }

    /// The growth from `earlier` to this reading.
    public func since(_ earlier: MigrationCounters) -> MigrationCounters {
        MigrationCounters(success: success - earlier.success, failure: failure - earlier.failure)
    }
}
