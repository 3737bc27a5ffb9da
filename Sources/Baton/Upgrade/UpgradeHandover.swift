#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

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
        var fd: Int32
        var adopted: Bool
    }

    struct Worker: Codable {
        var slot: Int
        var start: Int
        var pid: pid_t
    }

    var configuration: Configuration
    var generation: Int
    var workers: [Worker]
    var sockets: [Socket]
    /// `per-worker` listeners that run `shared` on a socket from systemd.
    var sharedInstead: [ListenerAddress]
    /// Descriptors Baton's parent passed, kept open across every upgrade.
    var descriptorsFromParent: [Int32]
    var scaledTo: Int?
    /// In-place upgrades so far, this one included.
    var upgrades: Int

    static let variable = "BATON_UPGRADE_HANDOVER"

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
