import ArgumentParser
import BatonCore
import Glibc

// Every command names itself: otherwise ArgumentParser derives each name from the type's
// name (`String(describing:)`), whose dynamic casts scan every protocol conformance in the
// statically linked binary, at every call (Docs/benchmarks.md, "batonctl's cost").
@main
struct BatonControl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batonctl",
        abstract: "Control a running Baton.",
        discussion:
            "Exit statuses: 0 done, 1 rolled back, 64 usage, 69 Baton unreachable, 75 refused for now, 76 broken answer, 77 permission denied, 78 configuration invalid, 124 timed out (Docs/command-line.md).",
        version: BatonVersion.current,
        subcommands: [Status.self, Reload.self, Scale.self, Promote.self, Rollback.self, Upgrade.self, Stop.self])

    // Also before the subcommand, as supervisorctl takes them (batonctl -s SOCK status):
    // swift-argument-parser fills every group of the same options, wherever they are given.
    @OptionGroup var options: ControlOptions
}

struct ControlOptions: ParsableArguments {
    @Option(name: [.customShort("s"), .customLong("control")], help: "Path of Baton's control socket.")
    var controlSocket: String?

    @Option(
        help:
            "How long to wait for each line of Baton's answer, in seconds (default: 30; 900 with --wait or --wait-drained; for upgrade, also how long to wait for the new binary to answer)."
    )
    var timeout: Double?

    var path: String { controlSocket ?? ControlSocketPath.default() }

    func validate() throws {
        if let timeout, !(timeout > 0 && timeout <= 86400) {
            throw ValidationError("--timeout must be more than 0 and at most 86400 seconds")
        }
    }

    /// The `--timeout` given, if any.
    var duration: Duration? { timeout.map { .milliseconds(Int64($0 * 1000)) } }

    func send(_ request: ControlRequest, onReply: (ControlReply) -> Void = { _ in }) throws -> ControlReply {
        do {
            return try ControlClient.send(request, to: path, timeout: duration, onReply: onReply)
        } catch {
            print("batonctl: \(error)")
            throw ExitStatus.of(error)
        }
    }

    /// Prints a command's final reply, and fails, with the exit status of its kind of
    /// failure, when it says the command failed.
    func finish(_ reply: ControlReply, _ command: String) throws {
        print(reply.ok ? reply.message ?? "ok" : "batonctl: \(reply.error ?? reply.message ?? "\(command) failed")")
        if !reply.ok { throw ExitStatus.of(reply.failure) }
    }

    /// Sends a request whose answer may come with progress, printing it as it comes.
    func sendShowingProgress(_ request: ControlRequest, _ command: String) throws {
        let reply = try send(request) { reply in
            if !reply.final, let message = reply.message {
                print(message)
                // Progress must show as it comes, also through a pipe.
                fflush(nil)
            }
        }
        try finish(reply, command)
    }
}

/// How long a command that changes what serves waits.
struct WaitOptions: ParsableArguments {
    @Flag(help: "Wait until it is over, and exit 0 only if it succeeded.") var wait = false
    @Flag(help: "As --wait, and then wait until the replaced generation's workers have exited (so that batonctl upgrade can run next).")
    var waitDrained = false

    var asked: Bool { wait || waitDrained }
    var drained: Bool? { waitDrained ? true : nil }
}

extension BatonControl {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Show generations, workers, listeners and recent reloads.")
        @OptionGroup var options: ControlOptions
        @Flag(help: "Print the status as JSON.") var json = false
        @Flag(help: "Print the status in Prometheus' text format.") var prometheus = false

        func run() throws {
            let reply = try options.send(ControlRequest(command: .status))
            guard reply.ok, let status = reply.status else {
                print("batonctl: \(reply.error ?? "no status in the answer")")
                throw reply.ok ? ExitStatus.brokenAnswer : ExitStatus.of(reply.failure)
            }
            let text =
                json
                ? StatusFormatter.json(status)
                : prometheus ? PrometheusText.render(status) : StatusFormatter.table(status)
            print(text, terminator: "")
        }
    }

    struct Scale: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "scale",
            abstract: "Run N workers: a reload whose new generation has N slots.",
            discussion:
                "The count holds for every later reload, until the next scale or a restart of Baton. With --wait, prints progress and exits 0 only if the new generation took over; with --wait-drained, once the old generation has exited too."
        )
        @OptionGroup var options: ControlOptions
        @Argument(help: "The number of workers, 1 to 1024.") var workers: Int
        @OptionGroup var waiting: WaitOptions

        func run() throws {
            try options.sendShowingProgress(
                ControlRequest(command: .scale, wait: waiting.asked, workers: workers, drained: waiting.drained), "scale")
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reload",
            abstract: "Start a new generation; the old one drains once the new one is ready.",
            discussion: """
                Without --wait, exits 0 once Baton checked the configuration and accepted the reload. With --wait, \
                prints progress and exits 0 only if the new generation took over (with --canary: once the canary \
                takes its share); with --wait-drained, once the old generation has exited too.
                """)
        @OptionGroup var options: ControlOptions
        @OptionGroup var waiting: WaitOptions
        @Option(help: "For this reload only: all-at-once, or rolling (a batch of slots at a time, Docs/rollouts.md), instead of the configured strategy.")
        var strategy: String?
        @Option(help: "For this reload only: with the rolling strategy, how many slots are replaced at a time (implies --strategy rolling).")
        var batch: Int?
        @Option(
            help:
                "Start only this many workers of the new generation, as a canary taking a share of new connections beside the old workers, until batonctl promote or batonctl rollback (Docs/rollouts.md)."
        )
        var canary: Int?
        @Option(help: "The canary's share of new connections, in percent, 1 to 99 (default: 10).")
        var weight: String?
        @Option(help: "How long the canary holds (such as 5m), then --promote-after or --rollback-after.")
        var hold: String?
        @Flag(help: "Promote the canary at the end of --hold.") var promoteAfter = false
        @Flag(help: "Roll the canary back at the end of --hold.") var rollbackAfter = false

        func validate() throws {
            if let strategy, !["all-at-once", "rolling"].contains(strategy) {
                throw ValidationError("--strategy must be all-at-once or rolling, not \"\(strategy)\"")
            }
            if let batch, !(1...1024).contains(batch) {
                throw ValidationError("--batch must be a number of slots from 1 to 1024")
            }
            if canary == nil && (weight != nil || hold != nil || promoteAfter || rollbackAfter) {
                throw ValidationError("--weight, --hold, --promote-after and --rollback-after are for a canary: give --canary N")
            }
            if weight != nil && percent == nil {
                throw ValidationError("--weight must be a percentage from 1 to 99, such as 10 or 10%")
            }
            if promoteAfter && rollbackAfter {
                throw ValidationError("--promote-after and --rollback-after cannot go together")
            }
            if (promoteAfter || rollbackAfter) && hold == nil {
                throw ValidationError("--promote-after and --rollback-after need --hold")
            }
        }

        /// `--weight` as a number of percent.
        var percent: Int? {
            weight.flatMap { Int($0.hasSuffix("%") ? String($0.dropLast()) : $0) }.flatMap { (1...99).contains($0) ? $0 : nil }
        }

        func run() throws {
            let after = promoteAfter ? "promote" : rollbackAfter ? "rollback" : nil
            try options.sendShowingProgress(
                ControlRequest(
                    command: .reload, wait: waiting.asked, strategy: strategy, batch: batch,
                    canary: canary, weight: percent, hold: hold, after: after, drained: waiting.drained), "reload")
        }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "promote",
            abstract: "Complete the reload whose canary holds, by the configured strategy.",
            discussion: "With --wait, exits 0 once the new generation serves alone; with --wait-drained, once the old one has exited too.")
        @OptionGroup var options: ControlOptions
        @OptionGroup var waiting: WaitOptions

        func run() throws {
            try options.sendShowingProgress(ControlRequest(command: .promote, wait: waiting.asked, drained: waiting.drained), "promote")
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rollback",
            abstract: "Drain the canary that holds; the old generation serves alone again.",
            discussion: "With --wait, exits 0 once the canary is out of rotation; with --wait-drained, once its workers have exited.")
        @OptionGroup var options: ControlOptions
        @OptionGroup var waiting: WaitOptions

        func run() throws {
            try options.sendShowingProgress(ControlRequest(command: .rollback, wait: waiting.asked, drained: waiting.drained), "rollback")
        }
    }

    struct Upgrade: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "upgrade",
            abstract: "Replace Baton's own binary in place, keeping its pid, its sockets and its workers.",
            discussion: """
                Install the new baton over the file it was started from, then run this. Baton executes \
                that file again and the new binary takes over the serving workers. Waits until it answers \
                again, then exits 0; exits non-zero, with the reason, when the upgrade was refused or failed.
                """)
        @OptionGroup var options: ControlOptions

        func run() throws {
            let timeout = options.timeout ?? 30
            let before = try options.send(ControlRequest(command: .status)).status
            let reply = try options.send(ControlRequest(command: .upgrade))
            guard reply.ok else {
                print("batonctl: \(reply.error ?? "upgrade failed")")
                throw ExitStatus.of(reply.failure)
            }
            print(reply.message ?? "upgrading")
            let wanted = (before?.upgrades ?? 0) + 1
            var waited = 0.0
            while waited < timeout {
                if let status = try? ControlClient.send(ControlRequest(command: .status), to: options.path, timeout: options.duration).status {
                    if (status.upgrades ?? 0) >= wanted && status.phase == .running {
                        print("upgraded: baton \(status.pid) serves generation \(status.generations.last?.number ?? 0) with the same workers")
                        return
                    }
                    if let error = status.upgradeError {
                        print("batonctl: upgrade failed, the old binary carries on: \(error)")
                        throw ExitStatus.rolledBack
                    }
                }
                usleep(50_000)
                waited += 0.05
            }
            print("batonctl: Baton did not answer upgraded within \(timeout)s; see its log")
            throw ExitStatus.timedOut
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop",
            abstract: "Drain every worker and stop Baton.",
            discussion:
                "With --wait, returns once every worker has exited and Baton exits, as systemd's ExecStop= and a Kubernetes preStop hook need (a stop_delay runs first)."
        )
        @OptionGroup var options: ControlOptions
        @Flag(help: "Wait until every worker has exited.") var wait = false

        func run() throws {
            try options.sendShowingProgress(ControlRequest(command: .stop, wait: wait ? true : nil), "stop")
        }
    }
}
