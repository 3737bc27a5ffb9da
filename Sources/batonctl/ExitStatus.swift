import ArgumentParser
import BatonCore

/// batonctl's exit statuses, from sysexits.h where one fits (Docs/command-line.md has the
/// table), so that a deploy script can tell a rollback from a refusal or a Baton that is
/// not there.
enum ExitStatus {
    /// The new generation, canary or binary failed; what served before serves on.
    static let rolledBack = ExitCode(1)
    /// EX_USAGE: the command line, or the request Baton got, is malformed or out of
    /// range (swift-argument-parser uses it for the command line too).
    static let usage = ExitCode(64)
    /// EX_UNAVAILABLE: no Baton answers on the control socket.
    static let unreachable = ExitCode(69)
    /// EX_TEMPFAIL: refused for now (a reload or canary under way, two generations alive,
    /// Baton stopping); nothing changed, and the same command may succeed later.
    static let refused = ExitCode(75)
    /// EX_PROTOCOL: Baton's answer ended early or could not be read.
    static let brokenAnswer = ExitCode(76)
    /// EX_NOPERM: this user may not use the socket, or not for this command.
    static let permissionDenied = ExitCode(77)
    /// EX_CONFIG: the configuration is invalid; nothing changed.
    static let configuration = ExitCode(78)
    /// Baton did not answer within --timeout, as timeout(1) exits.
    static let timedOut = ExitCode(124)

    static func of(_ failure: ControlFailure?) -> ExitCode {
        switch failure {
        case .configuration?: configuration
        case .refused?: refused
        case .permission?: permissionDenied
        case .invalid?: usage
        default: rolledBack
        }
    }

    static func of(_ error: ControlClientError) -> ExitCode {
        switch error.kind {
        case .unreachable: unreachable
        case .permissionDenied: permissionDenied
        case .timedOut: timedOut
        case .brokenAnswer: brokenAnswer
        }
    }
}
