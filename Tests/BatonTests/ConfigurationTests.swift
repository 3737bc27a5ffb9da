import Foundation
import Testing

@testable import Baton

@Suite struct ConfigurationFileTests {
    func parse(_ text: String) throws(ConfigurationError) -> Configuration {
        try ConfigurationFile.parse(text, source: "baton.toml", defaultControlSocket: "/run/default.sock")
    }

    @Test func readsEveryKey() throws {
        let configuration = try parse(
            """
            control_socket = "/run/app/baton.sock"

            [[listener]]
            name = "http"
            address = "tcp://0.0.0.0:8080"
            backlog = 1024

            [[listener]]
            name = "admin"
            address = "unix:///run/app/admin.sock"
            mode = "0660"

            [[listener]]
            name = "dns"
            address = "udp://[::1]:5353"
            reuseport = "shared"

            [[listener]]
            name = "quic"
            address = "udp://0.0.0.0:443"
            flows = "quic"
            flow_idle_timeout = "5m"
            flow_table_size = 1000

            [workers]
            command = ["./server", "--flag"]
            count = 4
            directory = "/srv/app"
            environment = { MODE = "production" }
            readiness = "exec:curl -fs http://127.0.0.1:8080/health"
            ready_timeout = "90s"
            drain_signal = "QUIT"
            drain_timeout = "1m"
            restart_delay = "250ms"
            restart_delay_max = "10s"
            output = "prefix"
            """)
        #expect(configuration.controlSocket == "/run/app/baton.sock")
        #expect(configuration.listeners.map(\.name) == ["http", "admin", "dns", "quic"])
        #expect(configuration.listeners[0].address == .tcp(host: "0.0.0.0", port: 8080))
        #expect(configuration.listeners[0].reusePort == .perWorker)
        #expect(configuration.listeners[0].backlog == 1024)
        #expect(configuration.listeners[1].reusePort == .shared)
        #expect(configuration.listeners[1].socketMode == 0o660)
        #expect(configuration.listeners[2].address == .udp(host: "::1", port: 5353))
        #expect(configuration.listeners[2].reusePort == .shared)
        #expect(configuration.listeners[2].flows == .none)
        #expect(configuration.listeners[3].flows == .quic)
        #expect(configuration.listeners[3].flowIdleTimeout == .seconds(300))
        #expect(configuration.listeners[3].flowTableSize == 1000)
        let workers = configuration.workers
        #expect(workers.command == ["./server", "--flag"])
        #expect(workers.count == 4)
        #expect(workers.directory == "/srv/app")
        #expect(workers.environment == ["MODE": "production"])
        #expect(workers.readiness == .exec("curl -fs http://127.0.0.1:8080/health"))
        #expect(workers.readyTimeout == .seconds(90))
        #expect(workers.drainSignal == 3)
        #expect(workers.drainTimeout == .seconds(60))
        #expect(workers.restartDelay == .milliseconds(250))
        #expect(workers.restartDelayMax == .seconds(10))
        #expect(workers.output == .prefix)
    }

    @Test(arguments: SocketProtocol.allCases)
    func readsEveryProtocol(_ socketProtocol: SocketProtocol) throws {
        let configuration = try parse(
            """
            [[listener]]
            name = "http"
            address = "tcp://127.0.0.1:8080"

            [workers]
            command = ["./server", "--fd", "{fd:http}"]
            protocol = "\(socketProtocol.rawValue)"
            """)
        #expect(configuration.workers.socketProtocol == socketProtocol)
        #expect(configuration.workers.command == ["./server", "--fd", "{fd:http}"])
    }

    @Test func defaultsAreThoseOfTheProduct() throws {
        let configuration = try parse(
            """
            [workers]
            command = "./server"
            """)
        #expect(configuration.controlSocket == "/run/default.sock")
        #expect(configuration.workers.count == 1)
        #expect(configuration.workers.readiness == .notify)
        #expect(configuration.workers.drainSignal == 15)
        #expect(configuration.workers.drainTimeout == .seconds(30))
        #expect(configuration.workers.socketProtocol == .systemd)
        #expect(configuration.workers.preloadLibrary == nil)
    }

    @Test(arguments: [
        ("[workers]\ncommand = [\"x\"]\ncount = \"four\"", "baton.toml: workers.count = \"four\": expected an integer"),
        ("[workers]\ncommand = [\"x\"]\ncount = 0", "baton.toml: workers.count = 0: expected a number of workers from 1 to 1024"),
        (
            "[workers]\ncommand = [\"x\"]\ncuont = 2",
            "baton.toml: workers.cuont: unknown key; did you mean `count`?"
        ),
        // Workers' credentials: names are looked up when the file is read.
        (
            "[workers]\ncommand = [\"x\"]\nuser = \"baton-no-such-user\"",
            "baton.toml: workers.user = \"baton-no-such-user\": no such user (looked up with getpwnam): create the user, or name an existing one"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ngroup = \"baton-no-such-group\"",
            "baton.toml: workers.group = \"baton-no-such-group\": no such group (looked up with getgrnam): create the group, or name an existing one"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nlimits = { nofiles = 10 }",
            "baton.toml: workers.limits = { nofiles = 10 }: unknown limit \"nofiles\"; known limits: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nlimits = { nofile = -1 }",
            "baton.toml: workers.limits = { nofile = -1 }: nofile = -1: expected a number of 0 or more, or \"infinity\""
        ),
        ("[workers]\ncommand = [\"x\"]\nlimits = { nofile = 1.5 }", "baton.toml: workers.limits.nofile: expected an integer"),
        ("[workers]\ncommand = [\"x\"]\nno_new_privileges = \"yes\"", "baton.toml: workers.no_new_privileges = \"yes\": expected true or false"),
        ("[workers]\ncommand = [\"x\"]\numask = \"0999\"", "baton.toml: workers.umask = \"0999\": expected an octal file mode such as \"0660\""),
        (
            "[workers]\ncommand = [\"x\"]\nprotocol = \"inetd\"",
            "baton.toml: workers.protocol = \"inetd\": unknown protocol: expected one of systemd, einhorn, server-starter, preload, none"
        ),
        ("[workers]\ncommand = [\"x\"]\npreload_library = \"/x.so\"", "baton.toml: workers.preload_library = \"/x.so\": only used with protocol = \"preload\""),
        (
            "[[listener]]\nname = \"http\"\naddress = \"tcp://127.0.0.1:80\"\n[workers]\ncommand = [\"x\", \"--fd={fd:htp}\"]",
            "baton.toml: workers.command = \"--fd={fd:htp}\": {fd:htp} names no listener; listeners: \"http\""
        ),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_timeout = \"soon\"",
            "baton.toml: workers.drain_timeout = \"soon\": expected a duration such as \"30s\", \"500ms\" or \"2m\""
        ),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_signal = \"TERMINATE\"",
            "baton.toml: workers.drain_signal = \"TERMINATE\": unknown signal: use a name such as TERM, QUIT or WINCH"
        ),
        // Out of range: each would have trapped, spun or stalled Baton.
        (
            "[workers]\ncommand = [\"x\"]\ndrain_timeout = \"1e300s\"",
            "baton.toml: workers.drain_timeout = \"1e300s\": out of range: expected a duration from 0s to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_timeout = \"25h\"",
            "baton.toml: workers.drain_timeout = \"25h\": out of range: expected a duration from 0s to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nready_timeout = \"1e10s\"",
            "baton.toml: workers.ready_timeout = \"1e10s\": out of range: expected a duration from 100ms to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nready_timeout = \"0s\"",
            "baton.toml: workers.ready_timeout = \"0s\": out of range: expected a duration from 100ms to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_grace = \"2000h\"",
            "baton.toml: workers.drain_grace = \"2000h\": out of range: expected a duration from 0s to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nrestart_delay = \"0s\"",
            "baton.toml: workers.restart_delay = \"0s\": out of range: expected a duration from 100ms to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nrestart_delay_max = \"1e12s\"",
            "baton.toml: workers.restart_delay_max = \"1e12s\": out of range: expected a duration from 100ms to 24h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nreadiness = \"delay:1e12s\"",
            "baton.toml: workers.readiness = \"delay:1e12s\": expected delay:<duration>, such as delay:2s"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nreadiness = \"delay:25h\"",
            "baton.toml: workers.readiness = \"delay:25h\": out of range: expected delay:<duration> of 24h or less"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ncanary_check = \"curl -f http://x\"",
            "baton.toml: workers.canary_check = \"curl -f http://x\": expected exec:<shell command>"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ncanary_check = \"exec: \"",
            "baton.toml: workers.canary_check = \"exec: \": expected exec:<shell command>, the command is empty"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ncanary_check_interval = \"50ms\"",
            "baton.toml: workers.canary_check_interval = \"50ms\": out of range: expected a duration from 100ms to 1h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ncanary_check_interval = \"2h\"",
            "baton.toml: workers.canary_check_interval = \"2h\": out of range: expected a duration from 100ms to 1h"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ncanary_check_failures = 0",
            "baton.toml: workers.canary_check_failures = 0: expected a number of failures from 1 to 100"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ncanary_check_failures = 101",
            "baton.toml: workers.canary_check_failures = 101: expected a number of failures from 1 to 100"
        ),
        ("[workers]\ncommand = [\"x\"]\ncount = 2000", "baton.toml: workers.count = 2000: expected a number of workers from 1 to 1024"),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_signal = \"STOP\"",
            "baton.toml: workers.drain_signal = \"STOP\": this signal cannot tell a worker to drain (it stops or continues a process, or reports a child): use TERM, QUIT, INT, USR1, USR2, WINCH or HUP"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_signal = \"19\"",
            "baton.toml: workers.drain_signal = \"19\": this signal cannot tell a worker to drain (it stops or continues a process, or reports a child): use TERM, QUIT, INT, USR1, USR2, WINCH or HUP"
        ),
        (
            "[workers]\ncommand = [\"x\"]\ndrain_signal = \"SIGCHLD\"",
            "baton.toml: workers.drain_signal = \"SIGCHLD\": this signal cannot tell a worker to drain (it stops or continues a process, or reports a child): use TERM, QUIT, INT, USR1, USR2, WINCH or HUP"
        ),
        (
            "[[listener]]\nname = \"a\"\naddress = \"tcp://127.0.0.1:80\"\nbacklog = 0\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].backlog = 0: expected a positive number"
        ),
        (
            "[workers]\ncommand = [\"x\"]\nreadiness = \"magic\"",
            "baton.toml: workers.readiness = \"magic\": expected notify, delay:<duration> or exec:<command>"
        ),
        (
            "[[listener]]\nname = \"http\"\naddress = \"tcp://localhost:80\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].address = \"tcp://localhost:80\": 'localhost' is not an IP address: use an IPv4 literal or [IPv6] in brackets"
        ),
        (
            "[[listener]]\nname = \"http\"\naddress = \"tcp://127.0.0.1:99999\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].address = \"tcp://127.0.0.1:99999\": '99999' is not a port number (0-65535)"
        ),
        (
            "[[listener]]\nname = \"a:b\"\naddress = \"tcp://127.0.0.1:80\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].name = \"a:b\": a name is 1 to 255 letters, digits, '-', '_' or '.'"
        ),
        (
            "[[listener]]\nname = \"s\"\naddress = \"unix:///tmp/s\"\nreuseport = \"per-worker\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].reuseport = \"per-worker\": unix sockets can only be shared"
        ),
        (
            "[[listener]]\nname = \"h\"\naddress = \"tcp://127.0.0.1:80\"\nflows = \"tuple\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].flows = \"tuple\": only a udp listener with reuseport = \"per-worker\" has flows"
        ),
        (
            "[[listener]]\nname = \"q\"\naddress = \"udp://127.0.0.1:443\"\nreuseport = \"shared\"\nflows = \"quic\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].flows = \"quic\": only a udp listener with reuseport = \"per-worker\" has flows"
        ),
        (
            "[[listener]]\nname = \"q\"\naddress = \"udp://127.0.0.1:443\"\nflows = \"sticky\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].flows = \"sticky\": expected \"none\", \"tuple\" or \"quic\""
        ),
        (
            "[[listener]]\nname = \"q\"\naddress = \"tcp://127.0.0.1:443\"\nflow_table_size = 10\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].flow_table_size = 10: only udp listeners have flows"
        ),
        (
            "[[listener]]\nname = \"a\"\naddress = \"tcp://127.0.0.1:80\"\n[[listener]]\nname = \"a\"\naddress = \"tcp://127.0.0.1:81\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener.name = \"a\": two listeners have this name"
        ),
        ("[listener]\nname = \"a\"", "baton.toml: listener: use [[listener]] tables"),
        ("control_socket = \"/x\"", "baton.toml: workers: a [workers] table is required"),
        (
            "metrics = \"unix:///run/m.sock\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: metrics = \"unix:///run/m.sock\": expected \"tcp://HOST:PORT\", such as \"tcp://127.0.0.1:9102\""
        ),
        (
            "metrics = \"tcp://localhost:9102\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: metrics = \"tcp://localhost:9102\": 'localhost' is not an IP address: use an IPv4 literal or [IPv6] in brackets"
        ),
        (
            "metrics = \"tcp://127.0.0.1:80\"\n[[listener]]\nname = \"http\"\naddress = \"tcp://127.0.0.1:80\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: metrics = \"tcp://127.0.0.1:80\": a listener has this address"
        ),
    ])
    func badValuesAreNamedWithTheirKeyAndFile(text: String, message: String) {
        #expect(throws: ConfigurationError.self) { try parse(text) }
        do {
            _ = try parse(text)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func syntaxErrorsGiveTheLine() {
        do {
            _ = try parse("[workers]\ncommand = [\"x\"\n")
            Issue.record("a syntax error was accepted")
        } catch {
            #expect(error.description.hasPrefix("baton.toml:2:"))
        }
    }

    /// toml++ stops the process on a failed assertion for each of these (the fuzz target's
    /// finds); the file is read first in a forked copy, so each is an error naming the line
    /// and this test process lives on.
    @Test func inputThatAbortsTheTOMLParserIsAnErrorNotAnAbort() {
        let aborting = [
            ("[é]\n", 1), ("[workers]\ncommand = [\"x\"]\n  [[ é.x]]\n", 3), ("[[;istener]]\n", 1),
            ("[\nworkers]\n", 1), ("[[[listener]]\n", 1), ("[\u{670}]\n", 1),
        ]
        for (text, line) in aborting {
            do {
                _ = try parse(text)
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.description.hasPrefix("baton.toml:\(line): not valid TOML: the TOML parser (toml++) stopped with SIGABRT"), "\(error)")
            }
        }
        // Inside a multi-line string such a line is text.
        #expect((try? parse("[workers]\ncommand = [\"\"\"\n[é]\"\"\"]\n"))?.workers.command == ["[é]"])
    }

    @Test func missingFileIsAClearError() {
        do {
            _ = try ConfigurationFile.load(path: "/nonexistent/baton.toml", defaultControlSocket: "/x")
            Issue.record("a missing file was accepted")
        } catch {
            #expect(error.description == "/nonexistent/baton.toml: cannot read the file: /nonexistent/baton.toml: open: No such file or directory")
        }
    }

    /// Run as root (as CI is), the names resolve to the entries' numbers and groups.
    @Test(.enabled(if: geteuid() == 0, "running workers as nobody needs root"))
    func workerCredentialsAndLimitsAreRead() throws {
        let configuration = try parse(
            """
            [workers]
            command = ["x"]
            user = "nobody"
            group = "0"
            no_new_privileges = true
            umask = "0027"
            limits = { nofile = 4096, core = 0, stack = "infinity" }
            """)
        let workers = configuration.workers
        #expect(workers.user?.name == "nobody")
        #expect(workers.user?.uid == 65534)
        #expect(workers.user?.home == "/nonexistent")
        #expect(workers.group == SystemGroup(name: "root", gid: 0))
        #expect(workers.noNewPrivileges)
        #expect(workers.umask == 0o027)
        #expect(workers.limits == [.nofile: 4096, .core: 0, .stack: ResourceLimit.unlimited])
        // The user's own primary group gives way to the group given.
        #expect(workers.credentials == ProcessSpawner.Credentials(uid: 65534, gid: 0, groups: [0]))
    }

    /// A file past the size limit is refused before it is parsed, with an error that
    /// names the limit. Before the limit, a 50 MB file froze Baton for 9 s and left
    /// 760 MB resident. (A file at the limit is not read here: parsing 4 MiB in a debug
    /// build on a busy machine can outlast the parser trial's timeout.)
    @Test func aFileLargerThanTheLimitIsRefusedNamingIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-size-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let valid = "[workers]\ncommand = [\"x\"]\n"
        try valid.write(toFile: "\(directory)/small.toml", atomically: false, encoding: .utf8)
        #expect(try ConfigurationFile.load(path: "\(directory)/small.toml", defaultControlSocket: "/run/x.sock").workers.command == ["x"])
        let pastTheLimit = valid + "#" + String(repeating: "x", count: ConfigurationFile.maximumSize - valid.utf8.count) + "\n"
        #expect(pastTheLimit.utf8.count == ConfigurationFile.maximumSize + 2)
        try pastTheLimit.write(toFile: "\(directory)/large.toml", atomically: false, encoding: .utf8)
        do {
            _ = try ConfigurationFile.load(path: "\(directory)/large.toml", defaultControlSocket: "/run/x.sock")
            Issue.record("a file past the limit was read")
        } catch {
            #expect(
                error.description
                    == "\(directory)/large.toml: the file is larger than 4194304 bytes (4 MiB), the largest configuration Baton reads; nothing was read from it"
            )
        }
    }
}

@Suite struct CommandLineConfigurationTests {
    @Test func oneLinerBuildsTheSameConfigurationAsAFile() throws {
        var oneLine = CommandLineConfiguration()
        oneLine.listen = ["http=tcp://127.0.0.1:8080", "admin=tcp://[::1]:9090"]
        oneLine[Settings.workerCount] = "4"
        oneLine[Settings.readiness] = "delay:2s"
        oneLine[Settings.drainSignal] = "SIGQUIT"
        oneLine[Settings.drainTimeout] = "10s"
        oneLine[Settings.controlSocket] = "/tmp/b.sock"
        oneLine.command = ["./server", "--flag"]
        let configuration = try oneLine.configuration()
        #expect(configuration.listeners.map(\.address) == [.tcp(host: "127.0.0.1", port: 8080), .tcp(host: "::1", port: 9090)])
        #expect(configuration.workers.count == 4)
        #expect(configuration.workers.readiness == .delay(.seconds(2)))
        #expect(configuration.workers.drainSignal == 3)
        #expect(configuration.workers.drainTimeout == .seconds(10))
    }

    @Test func protocolAndPreloadLibraryFromTheCommandLine() throws {
        var oneLine = CommandLineConfiguration()
        oneLine.listen = ["http=tcp://127.0.0.1:8080"]
        oneLine[Settings.socketProtocol] = "preload"
        oneLine[Settings.preloadLibrary] = "/opt/baton/libbaton-preload.so"
        oneLine.command = ["python3", "-m", "http.server"]
        let workers = try oneLine.configuration().workers
        #expect(workers.socketProtocol == .preload)
        #expect(workers.preloadLibrary == "/opt/baton/libbaton-preload.so")

        oneLine[Settings.socketProtocol] = "einhorn"
        #expect(
            throws: ConfigurationError(
                source: "command line", key: "--preload-library", value: "/opt/baton/libbaton-preload.so",
                problem: "only used with --protocol preload")
        ) {
            try oneLine.configuration()
        }
        oneLine[Settings.preloadLibrary] = nil
        oneLine[Settings.socketProtocol] = "upstart"
        #expect(
            throws: ConfigurationError(
                source: "command line", key: "--protocol", value: "upstart",
                problem: "unknown protocol: expected one of systemd, einhorn, server-starter, preload, none")
        ) {
            try oneLine.configuration()
        }
    }

    @Test func descriptorPlaceholderMustNameAListener() {
        var oneLine = CommandLineConfiguration()
        oneLine.listen = ["http=tcp://127.0.0.1:8080", "admin=unix:///tmp/admin.sock"]
        oneLine.command = ["uvicorn", "--fd", "{fd:metrics}"]
        #expect(
            throws: ConfigurationError(
                source: "command line", key: "workers.command", value: "\"{fd:metrics}\"",
                problem: "{fd:metrics} names no listener; listeners: \"http\", \"admin\"")
        ) {
            try oneLine.configuration()
        }
    }

    @Test func listenWithoutANameIsAnError() {
        var oneLine = CommandLineConfiguration()
        oneLine.listen = ["tcp://127.0.0.1:8080"]
        oneLine.command = ["./server"]
        #expect(
            throws: ConfigurationError(
                source: "command line", key: "--listen", value: "tcp://127.0.0.1:8080",
                problem: "expected NAME=ADDRESS, such as http=tcp://0.0.0.0:8080")
        ) {
            try oneLine.configuration()
        }
    }
}

@Suite struct FormatTests {
    @Test(arguments: [
        ("tcp://127.0.0.1:8080", ListenerAddress.tcp(host: "127.0.0.1", port: 8080)),
        ("tcp://[::]:80", .tcp(host: "::", port: 80)),
        ("udp://0.0.0.0:53", .udp(host: "0.0.0.0", port: 53)),
        ("unix:///run/app.sock", .unix(path: "/run/app.sock")),
    ])
    func addressesRoundTrip(text: String, address: ListenerAddress) throws {
        #expect(try ListenerAddress(parsing: text) == address)
        #expect(address.description == text)
    }

    @Test(arguments: ["127.0.0.1:80", "http://127.0.0.1:80", "tcp://127.0.0.1", "tcp://[::1:80", "unix://"])
    func badAddressesAreRejected(text: String) {
        #expect(throws: FormatError.self) { try ListenerAddress(parsing: text) }
    }

    @Test func durations() {
        #expect(DurationFormat.parse("30s") == .seconds(30))
        #expect(DurationFormat.parse("1.5s") == .milliseconds(1500))
        #expect(DurationFormat.parse("250ms") == .milliseconds(250))
        #expect(DurationFormat.parse("2m") == .seconds(120))
        #expect(DurationFormat.parse("10") == nil)
        #expect(DurationFormat.parse("-1s") == nil)
        // Too long for a timer: rejected, where it used to stop Baton with a trap.
        #expect(DurationFormat.parse("1e300s") == nil)
        #expect(DurationFormat.parse("1e10s") == nil)
        #expect(DurationFormat.parse("9000000000s") == .seconds(9_000_000_000))
        #expect(DurationFormat.string(.milliseconds(1500)) == "1500ms")
        #expect(DurationFormat.string(.seconds(30)) == "30s")
    }

    @Test func durationsOfAllowedLengthsAreAccepted() throws {
        let configuration = try ConfigurationFile.parse(
            """
            [workers]
            command = ["x"]
            ready_timeout = "100ms"
            drain_timeout = "0s"
            drain_grace = "24h"
            restart_delay = "100ms"
            restart_delay_max = "24h"
            drain_signal = "KILL"
            readiness = "delay:24h"
            """, source: "baton.toml", defaultControlSocket: "/run/default.sock")
        #expect(configuration.workers.readyTimeout == .milliseconds(100))
        #expect(configuration.workers.restartDelayMax == .seconds(86400))
        #expect(configuration.workers.drainSignal == SIGKILL)
        #expect(DurationFormat.string(.seconds(86400)) == "24h")
    }

    @Test func durationsTooLongForNanosecondsSaturateInsteadOfTrapping() {
        // WATCHDOG_USEC comes from the environment, unchecked by the settings' ranges.
        #expect(Duration.microseconds(Int64(UInt64.max / 2)).nanoseconds == .max)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
        #expect(Duration.milliseconds(1500).nanoseconds == 1_500_000_000)
    }

    @Test func commandLineValuesOutOfRangeAreErrors() {
        var oneLine = CommandLineConfiguration()
        oneLine.command = ["x"]
        oneLine[Settings.readyTimeout] = "1e10s"
        #expect(
            throws: ConfigurationError(
                source: "command line", key: "--ready-timeout", value: "1e10s",
                problem: "out of range: expected a duration from 100ms to 24h")
        ) {
            try oneLine.configuration()
        }
    }

    @Test func signals() {
        #expect(SignalName.parse("TERM") == 15)
        #expect(SignalName.parse("sigquit") == 3)
        #expect(SignalName.parse("WINCH") == 28)
        #expect(SignalName.parse("12") == 12)
        #expect(SignalName.parse("NOPE") == nil)
    }

    @Test func notifyMessages() {
        let message = NotifyMessage("READY=1\nSTATUS=serving on :8080\nMAINPID=12")
        #expect(message.ready && !message.stopping)
        #expect(message.status == "serving on :8080")
        #expect(NotifyMessage("STOPPING=1").stopping)
        #expect(!NotifyMessage("READY=0").ready)
    }
}

@Suite struct ControlProtocolTests {
    @Test func requestsDecode() throws {
        #expect(try ControlRequest.decode(#"{"command":"reload","wait":true}"#).get() == ControlRequest(command: .reload, wait: true))
        #expect(try ControlRequest.decode(#"{"command":"status"}"#).get() == ControlRequest(command: .status))
    }

    @Test(arguments: [
        ("reload", "not a JSON object: send one line such as {\"command\":\"status\"}"),
        (#"{"wait":true}"#, "the request has no \"command\""),
        (#"{"command":"relaod"}"#, "unknown command \"relaod\"; known commands: status, reload, scale, upgrade, stop, promote, rollback"),
    ])
    func badRequestsGetAnErrorNamingTheProblem(line: String, error: String) {
        #expect(ControlRequest.decode(line) == .failure(ControlProtocolError(error)))
    }

    @Test func repliesRoundTrip() {
        let reply = ControlReply(ok: false, final: true, error: "rolled back")
        #expect(ControlReply.decode(reply.encodedLine()) == reply)
    }
}

@Suite struct SettingsTests {
    /// The table of Docs/configuration.md, written from the settings' declarations.
    static var documentation: String {
        func rows<Root>(_ settings: [any AnySetting<Root>], table: String) -> [String] {
            settings.map { setting in
                let commandLine =
                    switch setting.commandLine {
                    case .option(let name): "`--\(name)`"
                    case .within(let usage): "in `\(usage)`"
                    case .none: ""
                    }
                let defaultValue = setting.defaultValueText.map { "`\($0)`" } ?? setting.defaultDescription ?? "required"
                return "| `\(table)\(setting.key)` | \(commandLine) | \(setting.valueDescription) | \(defaultValue) | \(setting.help). |"
            }
        }
        let rows =
            rows(Settings.configuration, table: "") + rows(Settings.listener, table: "listener.")
            + rows(Settings.workers, table: "workers.")
        return (["| Key | Command line | Value | Default | |", "|---|---|---|---|---|"] + rows).joined(separator: "\n")
    }

    @Test func docsListEverySettingAsDeclared() throws {
        let docs = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../Docs/configuration.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let documented = text.contains(Self.documentation)
        #expect(documented, "Docs/configuration.md should hold this table:\n\(Self.documentation)")
    }

    /// The names of this process's user and group, which any Baton may run workers as.
    static let ownUser = String(cString: getpwuid(geteuid())!.pointee.pw_name)
    static let ownGroup = String(cString: getgrgid(getegid())!.pointee.gr_name)

    @Test func everyOptionReadsLikeItsKey() throws {
        // The command line and the file read an option's value with the same parser.
        let file = try ConfigurationFile.parse(
            """
            metrics = "tcp://[::1]:9102"
            stop_delay = "4s"

            [workers]
            command = "./server"
            count = 3
            readiness = "delay:1s"
            ready_timeout = "5s"
            drain_signal = "QUIT"
            drain_timeout = "7s"
            drain_grace = "2s"
            stall_timeout = "3s"
            output = "prefix"
            protocol = "preload"
            preload_library = "/x.so"
            user = "\(Self.ownUser)"
            group = "\(Self.ownGroup)"
            strategy = "rolling"
            batch = 2
            canary_check = "exec:curl -fs http://127.0.0.1:8080/health"
            canary_check_interval = "2s"
            canary_check_failures = 4
            """, source: "baton.toml", defaultControlSocket: "/run/b.sock")
        var oneLine = CommandLineConfiguration()
        oneLine.command = ["./server"]
        oneLine[Settings.workerCount] = "3"
        oneLine[Settings.readiness] = "delay:1s"
        oneLine[Settings.readyTimeout] = "5s"
        oneLine[Settings.drainSignal] = "QUIT"
        oneLine[Settings.drainTimeout] = "7s"
        oneLine[Settings.drainGrace] = "2s"
        oneLine[Settings.stallTimeout] = "3s"
        oneLine[Settings.output] = "prefix"
        oneLine[Settings.socketProtocol] = "preload"
        oneLine[Settings.preloadLibrary] = "/x.so"
        oneLine[Settings.user] = Self.ownUser
        oneLine[Settings.group] = Self.ownGroup
        oneLine[Settings.controlSocket] = "/run/b.sock"
        oneLine[Settings.metrics] = "tcp://[::1]:9102"
        oneLine[Settings.stopDelay] = "4s"
        oneLine[Settings.strategy] = "rolling"
        oneLine[Settings.batch] = "2"
        oneLine[Settings.canaryCheck] = "exec:curl -fs http://127.0.0.1:8080/health"
        oneLine[Settings.canaryCheckInterval] = "2s"
        oneLine[Settings.canaryCheckFailures] = "4"
        // Every option of the table is above.
        let options = (Settings.configuration.map(\.commandLine) + Settings.workers.map(\.commandLine)).filter {
            if case .option = $0 { true } else { false }
        }
        #expect(options.count == 20)
        #expect(try oneLine.configuration() == file)
    }
}

/// `batonctl upgrade` hands the configuration to the new binary as JSON; an older Baton
/// wrote it without the fields added since.
@Suite struct ConfigurationHandoverTests {
    @Test func aFieldAnOlderBatonDidNotWriteTakesItsDefault() throws {
        var settings = WorkerConfiguration(command: ["./server"])
        settings.count = 3
        settings.drainTimeout = .seconds(7)
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(settings)) as? [String: Any])
        #expect(object.removeValue(forKey: "drainGrace") != nil, "the field is written")
        let older = try JSONSerialization.data(withJSONObject: object)
        let read = try JSONDecoder().decode(WorkerConfiguration.self, from: older)
        #expect(read == settings, "everything else as written, drainGrace at its default")
        #expect(read.drainGrace == Settings.drainGrace.defaultValue)
    }

    /// A handover from a Baton without UDP flows: its listeners have `flows = "none"`, and
    /// its steering groups no flow maps (the program it hands over keeps steering without them).
    @Test func aHandoverFromABatonWithoutFlowsIsTaken() throws {
        let listener = #"{"name":"quic","address":{"udp":{"host":"127.0.0.1","port":443}},"reusePort":"per-worker"}"#
        let read = try JSONDecoder().decode(ListenerConfiguration.self, from: Data(listener.utf8))
        #expect(read.flows == .none)
        let steering = #"{"address":{"udp":{"host":"127.0.0.1","port":443}},"program":5,"sockets":6,"rotation":7,"count":8,"counters":9,"capacity":2048}"#
        let group = try JSONDecoder().decode(UpgradeHandover.Steering.self, from: Data(steering.utf8))
        #expect(group.flows == nil && group.descriptors == [5, 6, 7, 8, 9])
    }
}
