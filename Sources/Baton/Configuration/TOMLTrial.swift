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
    /// How long every trial of one file may take together, the search for the failing
    /// line included, so that a file that hangs or aborts the parser costs one reload at
    /// most this long, however many lines it has.
    static let totalMilliseconds: Int32 = 15_000

    /// Throws when toml++ would not survive `text`, naming the first line whose prefix
    /// already stops it (or the lines it is between, when time ran out first).
    static func check(_ text: String, source: String) throws(ConfigurationError) {
        var budget = Budget()
        let outcome = run(text, &budget)
        guard outcome != BATON_TRIAL_RETURNED else { return }
        let how =
            switch outcome {
            case BATON_TRIAL_TIMED_OUT: "did not finish within \(timeoutMilliseconds / 1000) s"
            case BATON_TRIAL_VANISHED: "stopped without an answer"
            default: "stopped with \(SignalName.name(outcome)) (a failed assertion) instead of reporting an error"
            }
        // A parser that hangs would hang again on every prefix: no search then.
        let lines = outcome == BATON_TRIAL_TIMED_OUT ? nil : firstFailingLine(of: text, &budget)
        let place =
            switch lines {
            case .some(let range) where range.count == 1: "\(source):\(range.lowerBound)"
            case .some(let range): "\(source):\(range.lowerBound)-\(range.upperBound)"
            case nil: source
            }
        let upTo = lines.map { $0.count == 1 ? " up to this line" : " up to a line in this range (the search for it ran out of time)" } ?? ""
        throw ConfigurationError(
            source: place,
            problem: "not valid TOML: the TOML parser (toml++) \(how) reading this file\(upTo); check its brackets, quotes and comments")
    }

    /// What is left of ``totalMilliseconds``.
    struct Budget {
        private let ends = Clock.monotonic() + Double(TOMLTrial.totalMilliseconds) / 1000

        var remainingMilliseconds: Int32 {
            Int32(max(0, min(Double(TOMLTrial.timeoutMilliseconds), (ends - Clock.monotonic()) * 1000)))
        }
    }

    /// The trial's outcome for `text` (BATON_TRIAL_*, or the signal that ended it). A
    /// trial that cannot even start (no memory for a fork) counts as surviving, so that
    /// the file gets read the way it was before trials existed.
    private static func run(_ text: String, _ budget: inout Budget) -> Int32 {
        var outcome: Int32 = BATON_TRIAL_RETURNED
        let timeout = max(1, budget.remainingMilliseconds)
        let failed = text.withCString { cText in
            baton_trial(parseInCopy, UnsafeRawPointer(cText), timeout, &outcome)
        }
        return failed == 0 ? outcome : BATON_TRIAL_RETURNED
    }

    /// The lines among which the first whose prefix the parser does not survive lies:
    /// one line, found by bisection, or a range when the budget ran out first; nil when
    /// the whole text survives or nothing could be narrowed.
    private static func firstFailingLine(of text: String, _ budget: inout Budget) -> ClosedRange<Int>? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var low = 1
        var high = lines.count
        while low < high {
            guard budget.remainingMilliseconds > 0 else { return low...high }
            let middle = (low + high) / 2
            switch run(lines.prefix(middle).joined(separator: "\n") + "\n", &budget) {
            case BATON_TRIAL_RETURNED: low = middle + 1
            // Out of time (the budget's, or a prefix that hangs): it says nothing of where.
            case BATON_TRIAL_TIMED_OUT: return low...high
            default: high = middle
            }
        }
        return low...low
    }
}

/// What the copy runs: toml++ alone, through TOMLKit's C entry point. A parse error is a
/// normal return; only an abort, a crash or a hang fails the trial.
private let parseInCopy: @convention(c) (UnsafeRawPointer?) -> Void = { text in
    guard let text else { return }
    let error = UnsafeMutablePointer<CTOMLParseError>.allocate(capacity: 1)
    _ = tableCreateFromString(text.assumingMemoryBound(to: CChar.self), error)
}
