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
        subcommands: [Status.self, Reload.self, Scale.self, Promote.self, Rollback.self, Upgrade.self, Stop.self])
}

struct ControlOptions: ParsableArguments {
    @Option(name: [.customShort("s"), .customLong("control")], help: "Path of Baton's control socket.")
    var controlSocket: String?

    @Option(
        help:
            "How long to wait for each line of Baton's answer, in seconds (default: 30; 900 for reload and scale with --wait; for upgrade, also how long to wait for the new binary to answer)."
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
            throw ExitCode(2)
        }
    }

    /// Prints a command's final reply, and fails when it says the command failed.
    func finish(_ reply: ControlReply, _ command: String) throws {
        print(reply.ok ? reply.message ?? "ok" : "batonctl: \(reply.error ?? reply.message ?? "\(command) failed")")
        if !reply.ok { throw ExitCode.failure }
    }
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
                throw ExitCode.failure
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
                "The count holds for every later reload, until the next scale or a restart of Baton. With --wait, prints progress and exits 0 only if the new generation took over."
        )
        @OptionGroup var options: ControlOptions
        @Argument(help: "The number of workers, 1 to 1024.") var workers: Int
        @Flag(help: "Wait until the reload is over.") var wait = false

        func run() throws {
            try Reload.send(ControlRequest(command: .scale, wait: wait, workers: workers), options)
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reload",
            abstract: "Start a new generation; the old one drains once the new one is ready.",
            discussion: "With --wait, prints progress and exits 0 only if the new generation took over.")
        @OptionGroup var options: ControlOptions
        @Flag(help: "Wait until the reload is over.") var wait = false
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
            try Self.send(
                ControlRequest(
                    command: .reload, wait: wait, strategy: strategy, batch: batch,
                    canary: canary, weight: percent, hold: hold, after: after), options)
        }

        /// Sends a request that reloads, printing progress as it comes.
        static func send(_ request: ControlRequest, _ options: ControlOptions) throws {
            let reply = try options.send(request) { reply in
                if !reply.final, let message = reply.message {
                    print(message)
                    // Progress must show as it comes, also through a pipe.
                    fflush(nil)
                }
            }
            try options.finish(reply, "reload")
        }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "promote",
            abstract: "Complete the reload whose canary holds, by the configured strategy.")
        @OptionGroup var options: ControlOptions

        func run() throws {
            let reply = try options.send(ControlRequest(command: .promote))
            try options.finish(reply, "promote")
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rollback",
            abstract: "Drain the canary that holds; the old generation serves alone again.")
        @OptionGroup var options: ControlOptions

        func run() throws {
            let reply = try options.send(ControlRequest(command: .rollback))
            try options.finish(reply, "rollback")
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
                throw ExitCode.failure
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
                        throw ExitCode.failure
                    }
                }
                usleep(50_000)
                waited += 0.05
            }
            print("batonctl: Baton did not answer upgraded within \(timeout)s; see its log")
            throw ExitCode.failure
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop",
            abstract: "Drain every worker and stop Baton.",
            discussion: "With --wait, returns once Baton has exited, as systemd's ExecStop= needs: what is left of the service after it gets SIGTERM.")
        @OptionGroup var options: ControlOptions
        @Flag(help: "Wait until Baton has exited.") var wait = false

        func run() throws {
            let pid = wait ? try options.send(ControlRequest(command: .status)).status?.pid : nil
            let reply = try options.send(ControlRequest(command: .stop))
            try options.finish(reply, "stop")
            guard let pid else { return }
            while Self.isRunning(pid) {
                usleep(50_000)
            }
            print("baton \(pid) has exited")
        }

        /// Whether `pid` runs: it exists and is not a zombie waiting for its parent.
        static func isRunning(_ pid: Int32) -> Bool {
            guard let stat = try? FileContents.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
            return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
        }
    }
}
