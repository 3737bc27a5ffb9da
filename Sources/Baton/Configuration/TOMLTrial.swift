import CBatonShim
import CTOML

/// Reads a TOML text first in a forked copy of Baton, because toml++ (the C++ parser
/// TOMLKit wraps) stops the process on a failed assertion for some malformed input
/// (`command = [# … "x"`, a table name starting with `é`) instead of reporting an error,
/// and SwiftPM keeps C++ assertions on in release builds. On a reload that process would
/// be the serving Baton. The copy runs only the parser and exits; when it survives, the
/// same text is parsed again in Baton, where it cannot abort either (the parser is
/// deterministic). Docs/security.md, "Fuzzing".
enum TOMLTrial {
    /// How long the copy may take before the file is refused (a configuration file
    /// parses in well under a millisecond).
    static let timeoutMilliseconds: Int32 = 10_000

    /// Throws when toml++ would not survive `text`, naming the first line whose prefix
    /// already stops it.
    static func check(_ text: String, source: String) throws(ConfigurationError) {
        let outcome = run(text)
        guard outcome != BATON_TRIAL_RETURNED else { return }
        let line = firstFailingLine(of: text) ?? 1
        let how = switch outcome {
        case BATON_TRIAL_TIMED_OUT: "did not finish within \(timeoutMilliseconds / 1000) s"
        case BATON_TRIAL_VANISHED: "stopped without an answer"
        default: "stopped with \(SignalName.name(outcome)) (a failed assertion) instead of reporting an error"
        }
        throw ConfigurationError(source: "\(source):\(line)",
                                 problem: "not valid TOML: the TOML parser (toml++) \(how) reading this file up to this line; check its brackets, quotes and comments")
    }

    /// The trial's outcome for `text` (BATON_TRIAL_*, or the signal that ended it). A
    /// trial that cannot even start (no memory for a fork) counts as surviving, so that
    /// the file gets read the way it was before trials existed.
    private static func run(_ text: String) -> Int32 {
        var outcome: Int32 = BATON_TRIAL_RETURNED
        let failed = text.withCString { cText in
            baton_trial(parseInCopy, UnsafeRawPointer(cText), timeoutMilliseconds, &outcome)
        }
        return failed == 0 ? outcome : BATON_TRIAL_RETURNED
    }

    /// The smallest number of lines whose prefix the parser does not survive, by
    /// bisection (a handful of trials; only on the failure path).
    private static func firstFailingLine(of text: String) -> Int? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var low = 1
        var high = lines.count
        guard run(lines.prefix(high).joined(separator: "\n") + "\n") != BATON_TRIAL_RETURNED else { return nil }
        while low < high {
            let middle = (low + high) / 2
            if run(lines.prefix(middle).joined(separator: "\n") + "\n") == BATON_TRIAL_RETURNED {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low
    }
}

/// What the copy runs: toml++ alone, through TOMLKit's C entry point. A parse error is a
/// normal return; only an abort, a crash or a hang fails the trial.
private let parseInCopy: @convention(c) (UnsafeRawPointer?) -> Void = { text in
    guard let text else { return }
    let error = UnsafeMutablePointer<CTOMLParseError>.allocate(capacity: 1)
    _ = tableCreateFromString(text.assumingMemoryBound(to: CChar.self), error)
}
