import Glibc

/// Signal names as written in configurations: `TERM`, `SIGQUIT`, `winch`, or a number.
public enum SignalName {
    static let terminate = SIGTERM

    private static let names: [(String, Int32)] = [
        ("HUP", SIGHUP), ("INT", SIGINT), ("QUIT", SIGQUIT), ("KILL", SIGKILL), ("USR1", SIGUSR1),
        ("USR2", SIGUSR2), ("PIPE", SIGPIPE), ("ALRM", SIGALRM), ("TERM", SIGTERM), ("CHLD", SIGCHLD),
        ("CONT", SIGCONT), ("STOP", SIGSTOP), ("TSTP", SIGTSTP), ("TTIN", SIGTTIN), ("TTOU", SIGTTOU),
        ("URG", SIGURG), ("WINCH", SIGWINCH), ("ABRT", SIGABRT), ("SEGV", SIGSEGV), ("BUS", SIGBUS),
        ("ILL", SIGILL), ("FPE", SIGFPE), ("TRAP", SIGTRAP), ("SYS", SIGSYS),
    ]

    /// Signals that cannot tell a worker to drain: job control, which stops or continues
    /// it (a stopped worker would sit out the whole drain timeout), and the one that
    /// reports a child's exit. `KILL` is allowed: it drains by killing at once.
    static let refusedForDrain: [Int32] = [SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU]

    static func parse(_ text: String) -> Int32? {
        if let number = Int32(text), number > 0, number < 65 { return number }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        return names.first { $0.0 == name }?.1
    }

    static func name(_ signal: Int32) -> String {
        names.first { $0.1 == signal }.map { "SIG\($0.0)" } ?? "signal \(signal)"
    }
}
