import Glibc

/// baton-demo's command line, parsed by hand to keep the demo free of dependencies.
struct Options {
    /// Standalone: bind this address (`HOST:PORT`, `[::1]:PORT`) instead of inheriting.
    var listen: String?
    /// Standalone: set SO_REUSEPORT, so several demos share the port (the naive reload).
    var reusePort = false
    var readyDelayMilliseconds = 0
    var neverReady = false
    var exitAtStart: Int32?
    /// A keep-alive connection idle this long after the drain began is closed.
    var drainIdleMilliseconds: Int64 = 1000
    /// Stop accepting, keep the socket open this long, then close it (benchmarks only).
    var drainPauseMilliseconds: Int64?
    /// On the drain signal, exit at once, dropping every connection accepted and not
    /// yet answered: the shutdown of several popular servers, for tests and benchmarks.
    var rudeDrain = false
    /// Wait this long after each accepted connection before accepting the next: a slow
    /// server whose accept queue fills, for tests.
    var acceptPauseMilliseconds: UInt32 = 0

    static let usage = """
        usage: baton-demo [--listen HOST:PORT [--reuseport]] [--ready-delay-ms N] [--never-ready]
                          [--exit-at-start CODE] [--drain-idle-ms N] [--drain-pause-ms N] [--rude-drain]
                          [--accept-pause-ms N]
        Serves HTTP/1.1 on the socket Baton passes (LISTEN_FDS), the one Server::Starter
        passes (SERVER_STARTER_PORT), or on --listen.
        GET /           200 with pid, generation and slot
        GET /sleep?ms=N the same after N ms
        """

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var remaining = arguments[...]
        func value(_ name: String) -> String {
            guard let value = remaining.popFirst() else { fail("\(name) needs a value") }
            return value
        }
        func number(_ name: String) -> Int64 {
            let text = value(name)
            guard let number = Int64(text), number >= 0 else { fail("\(name): '\(text)' is not a number") }
            return number
        }
        while let argument = remaining.popFirst() {
            switch argument {
            case "--listen": options.listen = value(argument)
            case "--reuseport": options.reusePort = true
            case "--ready-delay-ms": options.readyDelayMilliseconds = Int(number(argument))
            case "--never-ready": options.neverReady = true
            case "--exit-at-start": options.exitAtStart = Int32(number(argument))
            case "--drain-idle-ms": options.drainIdleMilliseconds = number(argument)
            case "--drain-pause-ms": options.drainPauseMilliseconds = number(argument)
            case "--rude-drain": options.rudeDrain = true
            case "--accept-pause-ms": options.acceptPauseMilliseconds = UInt32(clamping: number(argument))
            case "-h", "--help":
                print(usage)
                exit(0)
            default: fail("unknown option \(argument)")
            }
        }
        return options
    }

    static func fail(_ message: String) -> Never {
        log("\(message)\n\(usage)")
        exit(2)
    }
}
