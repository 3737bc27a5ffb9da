import BatonCore
import BatonLoad
import Foundation
import Testing

/// Workers as another user (Docs/security.md, Privileges): real users and groups made
/// for the test with useradd and groupadd (CI runs as root), removed when it ends.
@Suite(.serialized, .enabled(if: geteuid() == 0, "making users and running workers as another user needs root (CI runs as root)"))
struct PrivilegeTests {
    /// What `/proc/PID/status` says of a process: `Uid`, `Gid`, `Groups`, `NoNewPrivs`, `Umask`, ….
    static func processStatus(_ pid: Int32) throws -> [String: String] {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// A process's environment.
    static func environment(_ pid: Int32) throws -> [String: String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))
        var result: [String: String] = [:]
        for entry in data.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
        }
        return result
    }

    static func workerPIDs(_ status: StatusReport) -> [Int32] {
        status.generations.flatMap(\.workers).compactMap(\.pid)
    }

    /// `[[listener]]` http on 127.0.0.1:`port` and `[workers]` running baton-demo with `extra` lines.
    static func configuration(port: Int, workers: Int = 2, _ extra: String) -> String {
        serviceConfiguration(port: port, command: [Products.path("baton-demo")], workers: workers) + "\n" + extra + "\n"
    }

    @Test func workersRunAsTheConfiguredUserWithItsGroupsLimitsAndEnvironment() throws {
        let group = try TestGroup()
        let user = try TestUser(primaryGroup: "nogroup", supplementary: [group.name])
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write(
            "baton.toml",
            Self.configuration(
                port: port,
                """
                user = "\(user.name)"
                no_new_privileges = true
                umask = "0027"
                limits = { nofile = 4096, core = 0 }
                """))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        defer { baton.stop() }
        // Serving means each worker reached its notify socket as that user.
        let status = try baton.waitUntilServing()
        let pids = Self.workerPIDs(status)
        #expect(pids.count == 2)
        for pid in pids {
            let fields = try Self.processStatus(pid)
            let uid = user.uid
            let nogroup = try TestGroup.id(of: "nogroup")
            #expect(fields["Uid"] == "\(uid)\t\(uid)\t\(uid)\t\(uid)", "\(fields)")
            #expect(fields["Gid"] == "\(nogroup)\t\(nogroup)\t\(nogroup)\t\(nogroup)", "\(fields)")
            #expect(Set(fields["Groups"]?.split(separator: " ").compactMap { UInt32($0) } ?? []) == [nogroup, group.gid], "\(fields)")
            #expect(fields["NoNewPrivs"] == "1")
            #expect(fields["Umask"] == "0027")
            #expect(fields["CapEff"] == "0000000000000000", "no capability of root's survives: \(fields)")
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            #expect(limits.contains(/Max open files\s+4096\s+4096/), "\(limits)")
            #expect(limits.contains(/Max core file size\s+0\s+0/), "\(limits)")
            let environment = try Self.environment(pid)
            #expect(environment["USER"] == user.name)
            #expect(environment["LOGNAME"] == user.name)
            #expect(environment["HOME"] == user.home)
        }
        print("workers \(pids) run as \(user.name) (uid \(user.uid)), groups nogroup and \(group.name) (gid \(group.gid))")
        #expect(AddressInUseTests.answers(port: port))
        #expect(baton.stop() == 0)
    }

    @Test func aWorkerAsNobodyServesAPrivilegedPortLosingNothingAcrossReloads() throws {
        let scratch = ScratchDirectory()
        let port = try Self.freePrivilegedPort()
        try scratch.write("baton.toml", Self.configuration(port: port, workers: 2, "user = \"nobody\"\ngroup = \"nogroup\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        defer { baton.stop() }
        let first = try baton.waitUntilServing()
        for pid in Self.workerPIDs(first) {
            #expect(try Self.processStatus(pid)["Uid"]?.hasPrefix("65534\t") == true)
        }
        // Baton, root, keeps only CAP_CHOWN, CAP_KILL, CAP_SETGID, CAP_SETUID,
        // CAP_NET_BIND_SERVICE and CAP_BPF, in its own sets and its bounding set.
        let batonStatus = try Self.processStatus(baton.process.processIdentifier)
        #expect(
            batonStatus["CapEff"] == "00000080000004e1" && batonStatus["CapPrm"] == "00000080000004e1"
                && batonStatus["CapBnd"] == "00000080000004e1" && batonStatus["CapInh"] == "0000000000000000", "\(batonStatus)")
        var load = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        load.clients = 16
        let generator = LoadGenerator(load)
        generator.start()
        let reloads = 10
        let replies = try (1...reloads).map { _ in try baton.reload() }
        let report = generator.stop()
        #expect(replies.allSatisfy { $0.ok }, "\(replies.filter { !$0.ok })")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > reloads, "the load must actually have run")
        let last = try baton.waitUntilServing(generation: reloads + 1)
        for pid in Self.workerPIDs(last) {
            #expect(try Self.processStatus(pid)["Uid"]?.hasPrefix("65534\t") == true)
        }
        print("port \(port), workers as nobody: \(report.succeeded) requests, \(report.totalFailures) failed over \(reloads) reloads")
        #expect(baton.stop() == 0)
    }

    /// A Baton started without CAP_SYS_RESOURCE in its bounding set, with `limits`, does not
    /// claim to keep it.
    @Test func batonNamesOnlyTheCapabilitiesItKeeps() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs setpriv to take CAP_SYS_RESOURCE away")
            return
        }
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration(port: freePort(), workers: 1, "user = \"nobody\"\nlimits = { core = 0 }"))
        let baton = try BatonUnderTest(
            ["--config", "baton.toml"], in: scratch,
            launcher: ["/usr/bin/setpriv", "--bounding-set", "-sys_resource", "--inh-caps", "-sys_resource", "--"])
        defer { baton.stop() }
        _ = try baton.waitUntilServing()
        #expect(
            baton.log.contains("Baton keeps only CAP_CHOWN, CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_NET_BIND_SERVICE, CAP_BPF of root's capabilities"),
            "\(baton.log)")
        #expect(!baton.log.contains("CAP_SYS_RESOURCE"), "\(baton.log)")
        #expect(baton.stop() == 0)
    }

    /// Workers that run as root inherit what Baton has: it drops nothing then.
    @Test func aBatonWhoseWorkersRunAsRootKeepsItsCapabilities() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration(port: freePort(), ""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        defer { baton.stop() }
        _ = try baton.waitUntilServing()
        let own = try Self.processStatus(getpid())
        let batonStatus = try Self.processStatus(baton.process.processIdentifier)
        #expect(batonStatus["CapBnd"] == own["CapBnd"] && batonStatus["CapEff"] == own["CapEff"], "\(batonStatus) against \(own)")
        #expect(baton.stop() == 0)
    }

    @Test func aReloadNamingAUserThatDoesNotExistRollsBackWithTheReason() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write("baton.toml", Self.configuration(port: port, "user = \"nobody\""))
        let baton = try BatonUnderTest(["--config", "\(scratch.path)/baton.toml"], in: scratch)
        defer { baton.stop() }
        let before = try baton.waitUntilServing()
        try scratch.write("baton.toml", Self.configuration(port: port, "user = \"baton-no-such-user\""))
        let reply = try ControlClient.send(ControlRequest(command: .reload, wait: true), to: baton.controlSocket, timeout: .seconds(60))
        #expect(!reply.ok)
        #expect(reply.error?.contains("\(scratch.path)/baton.toml: workers.user = \"baton-no-such-user\": no such user") == true, "\(reply)")
        let after = try baton.status()
        #expect(after.generations.map(\.number) == [1])
        #expect(Self.workerPIDs(after) == Self.workerPIDs(before))
        #expect(after.generations[0].workers.allSatisfy { $0.state == .ready })
        // A limit the kernel refuses (above fs.nr_open) fails the new workers' start in
        // the child, and the reload rolls back saying which call failed.
        try scratch.write("baton.toml", Self.configuration(port: port, "user = \"nobody\"\nlimits = { nofile = 4294967295 }"))
        let refused = try ControlClient.send(ControlRequest(command: .reload, wait: true), to: baton.controlSocket, timeout: .seconds(60))
        #expect(!refused.ok)
        #expect(refused.error?.contains("setrlimit(nofile=4294967295) failed: Operation not permitted") == true, "\(refused)")
        #expect(Self.workerPIDs(try baton.status()) == Self.workerPIDs(before))
        print("rolled back: \(reply.error ?? ""); \(refused.error ?? "")")
        #expect(baton.stop() == 0)
    }

    /// Root kept to the units' capability bounding set (Docs/systemd.md) runs workers as
    /// nobody, in a directory only nobody may enter, steers, and reloads: none of it needs
    /// CAP_DAC_OVERRIDE or CAP_FOWNER.
    @Test func rootWithOnlyTheUnitsCapabilitiesRunsWorkersAsNobody() throws {
        let scratch = ScratchDirectory()
        let port = try Self.freePrivilegedPort()
        let home = "\(scratch.path)/home"
        #expect(mkdir(home, 0o700) == 0 && chown(home, 65534, 65534) == 0)
        try scratch.write(
            "baton.toml",
            Self.configuration(
                port: port, workers: 2,
                """
                user = "nobody"
                group = "nogroup"
                directory = "\(home)"
                """))
        let baton = try BatonUnderTest(
            ["--config", "baton.toml"], in: scratch,
            launcher: [
                "/usr/bin/setpriv", "--bounding-set=-all,+chown,+kill,+setuid,+setgid,+net_bind_service,+bpf", "--inh-caps=-all",
            ])
        defer { baton.stop() }
        try baton.waitUntilServing()
        #expect(try Self.processStatus(baton.process.processIdentifier)["CapEff"] == "00000080000004e1")
        #expect(try baton.reload().ok)
        let status = try baton.waitUntilServing(generation: 2)
        for pid in Self.workerPIDs(status) {
            #expect(try Self.processStatus(pid)["Uid"]?.hasPrefix("65534\t") == true)
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) == home)
        }
        #expect(AddressInUseTests.answers(port: port))
        #expect(!baton.log.contains("steering is off"), "\(baton.log)")
        #expect(baton.stop() == 0)
    }

    /// The notify sockets Baton binds again after `batonctl upgrade` are the workers' again.
    @Test func anUpgradeInPlaceHandsTheWorkersTheirNotifySocketsAgain() throws {
        let scratch = ScratchDirectory()
        try scratch.write("baton.toml", Self.configuration(port: freePort(), workers: 2, "user = \"nobody\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        defer { baton.stop() }
        let before = try baton.waitUntilServing()
        let upgrade = try ControlClient.send(ControlRequest(command: .upgrade), to: baton.controlSocket)
        #expect(upgrade.ok, "\(upgrade)")
        let after = try baton.waitForStatus("the upgrade") { $0.upgrades == 1 }
        #expect(Self.workerPIDs(after) == Self.workerPIDs(before))
        for pid in Self.workerPIDs(after) {
            let path = try #require(try Self.environment(pid)["NOTIFY_SOCKET"])
            var info = stat()
            #expect(
                stat(path, &info) == 0 && info.st_uid == 65534 && info.st_mode & 0o777 == 0o600,
                "\(path): uid \(info.st_uid), mode \(String(info.st_mode & 0o777, radix: 8))")
            var directory = stat()
            #expect(stat((path as NSString).deletingLastPathComponent, &directory) == 0 && directory.st_mode & 0o777 == 0o711)
        }
        #expect(try baton.reload().ok)
        try baton.waitUntilServing(generation: 2)
        #expect(baton.stop() == 0)
    }

    /// A Baton without the privilege is told so when it reads the configuration, and
    /// starts nothing.
    @Test func aBatonThatIsNotRootCannotRunWorkersAsAnotherUser() throws {
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(
            ["--listen", "http=tcp://127.0.0.1:\(freePort())", "--user", "root", "--", "/bin/sleep", "1000"], in: scratch,
            launcher: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"],
            controlSocket: "/tmp/baton-privilege-\(UUID().uuidString.prefix(8)).sock")
        #expect(baton.waitForExit() != 0)
        #expect(baton.log.contains("command line: --user = root: Baton runs as uid 65534 without CAP_SETUID and CAP_SETGID"), "\(baton.log)")
        // Root whose bounding set lacks them is no better off, and is told so too.
        let bounded = try BatonUnderTest(
            ["--listen", "http=tcp://127.0.0.1:\(freePort())", "--user", "nobody", "--", "/bin/sleep", "1000"], in: scratch,
            launcher: ["/usr/bin/setpriv", "--bounding-set=-setuid,-setgid", "--inh-caps=-setuid,-setgid"])
        #expect(bounded.waitForExit() != 0)
        #expect(bounded.log.contains("command line: --user = nobody: Baton runs as uid 0 without CAP_SETUID and CAP_SETGID"), "\(bounded.log)")
    }

    /// `batonctl ARGUMENTS -s SOCKET` run as `user` (runuser); its exit status and output.
    static func batonctl(as user: String, _ arguments: [String], socket: String) throws -> (status: Int32, output: String) {
        try run("/usr/sbin/runuser", ["-u", user, "--", Products.path("batonctl")] + arguments + ["-s", socket])
    }

    /// control_group members reload, control_readonly_group members see the status and
    /// are refused the rest by name, anyone else cannot connect and is told why.
    @Test func theControlSocketLetsEachGroupDoWhatItMay() throws {
        let deploy = try TestGroup()
        let monitoring = try TestGroup()
        let deployer = try TestUser(primaryGroup: "nogroup", supplementary: [deploy.name])
        let monitor = try TestUser(primaryGroup: monitoring.name)
        let outsider = try TestUser(primaryGroup: "nogroup")
        let scratch = ScratchDirectory()
        let socket = "\(scratch.path)/control.sock"
        try scratch.write(
            "baton.toml",
            """
            control_socket = "\(socket)"
            control_group = "\(deploy.name)"
            control_readonly_group = "\(monitoring.name)"

            """ + Self.configuration(port: freePort(), workers: 2, "user = \"nobody\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch, controlSocket: socket)
        defer { baton.stop() }
        try baton.waitUntilServing()
        var info = stat()
        #expect(stat(socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660 && info.st_gid == deploy.gid, "mode \(String(info.st_mode & 0o777, radix: 8)), gid \(info.st_gid)")

        let deployed = try Self.batonctl(as: deployer.name, ["reload", "--wait"], socket: socket)
        #expect(deployed.status == 0, "\(deployed.output)")
        try baton.waitUntilServing(generation: 2)
        // Whoever may start a rollout may finish it: the deployer's canary, rolled back and
        // then promoted by the deployer.
        _ = try baton.waitForStatus(timeout: 60, "generation 2 serving alone") { $0.generations.map(\.number) == [2] }
        for (generation, finish) in [(3, "rollback"), (4, "promote")] {
            let canary = try Self.batonctl(as: deployer.name, ["reload", "--canary", "1"], socket: socket)
            #expect(canary.status == 0, "\(canary.output)")
            _ = try baton.waitForStatus(timeout: 60, "the canary of generation \(generation) serving") { status in
                status.rollout?.to == generation && !(status.rollout?.canary?.slots.isEmpty ?? true)
            }
            let finished = try Self.batonctl(as: deployer.name, [finish], socket: socket)
            #expect(finished.status == 0, "\(finish): \(finished.output)")
            _ = try baton.waitForStatus(timeout: 60, "the canary of generation \(generation) \(finish == "promote" ? "promoted" : "rolled back")") { status in
                status.rollout == nil && status.generations.map(\.number) == [finish == "promote" ? generation : 2]
            }
        }
        let stopByDeployer = try Self.batonctl(as: deployer.name, ["stop"], socket: socket)
        #expect(stopByDeployer.status != 0)
        #expect(stopByDeployer.output.contains("refused: uid \(deployer.uid) "), "\(stopByDeployer.output)")
        #expect(stopByDeployer.output.contains("may not run stop"), "\(stopByDeployer.output)")

        let watched = try Self.batonctl(as: monitor.name, ["status"], socket: socket)
        #expect(watched.status == 0, "\(watched.output)")
        let reloadByMonitor = try Self.batonctl(as: monitor.name, ["reload", "--wait"], socket: socket)
        #expect(reloadByMonitor.status != 0)
        #expect(reloadByMonitor.output.contains("refused: uid \(monitor.uid) "), "\(reloadByMonitor.output)")
        #expect(reloadByMonitor.output.contains("may not run reload"), "\(reloadByMonitor.output)")

        let outside = try Self.batonctl(as: outsider.name, ["status"], socket: socket)
        #expect(outside.status != 0)
        #expect(outside.output.contains("permission denied: the socket is owned by root, group \(deploy.name), mode 0660"), "\(outside.output)")

        // Refusals change nothing, and are logged.
        let status = try baton.status()
        #expect(status.generations.map(\.number) == [4])
        #expect(status.phase == .running)
        #expect(baton.log.contains("control request refused: uid \(monitor.uid)"), "\(baton.log)")
        // Who may use the socket does not change at a reload: refused, saying so.
        try scratch.write(
            "baton.toml",
            """
            control_socket = "\(socket)"
            control_group = "\(deploy.name)"

            """ + Self.configuration(port: freePort(), workers: 1, "user = \"nobody\""))
        let regrouped = try baton.reload()
        #expect(!regrouped.ok)
        #expect(
            regrouped.error?.contains("control_group: who may use the control socket (control_group, control_readonly_group) cannot change at a reload")
                == true,
            "\(regrouped)")
        print("deployer reloaded; stop refused: \(stopByDeployer.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        print("monitor: status ok; \(reloadByMonitor.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        print("outsider: \(outside.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        #expect(baton.stop() == 0)
    }

    /// Without control groups the socket is its owner's alone, and batonctl says whom to ask.
    @Test func anotherUserIsToldWhyTheControlSocketRefusesThem() throws {
        let outsider = try TestUser(primaryGroup: "nogroup")
        let scratch = ScratchDirectory()
        let baton = try BatonUnderTest(["--ready", "delay:50ms", "--", "/bin/sleep", "1000"], in: scratch)
        defer { baton.stop() }
        try baton.waitUntilServing()
        let refused = try Self.batonctl(as: outsider.name, ["status"], socket: baton.controlSocket)
        #expect(refused.status != 0)
        #expect(
            refused.output.contains(
                "permission denied: the socket is owned by root, group root, mode 0600, and uid \(outsider.uid) (\(outsider.name)) may not connect; only root may use it; ask for Baton's control_group"
            ),
            "\(refused.output)")
        #expect(baton.stop() == 0)
    }

    /// A port below 1024 that nothing on 127.0.0.1 listens on now.
    static func freePrivilegedPort() throws -> Int {
        for port in (800..<1000).shuffled() {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return port }
        }
        throw TestFailure("no free port from 800 to 999")
    }
}

/// Runs useradd, groupadd, userdel or groupdel, again while another one holds the user
/// database's lock (exit status 10, as when another test run makes its users at the same
/// time), a bounded number of times.
func runLockingUserDatabase(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    var result = try run(executable, arguments)
    for _ in 0..<100 where result.status == 10 {
        usleep(100_000)
        result = try run(executable, arguments)
    }
    return result
}

/// A group made for one test with groupadd, deleted when the test ends.
final class TestGroup {
    let name = "baton-g-" + UUID().uuidString.prefix(8).lowercased()
    let gid: UInt32

    init() throws {
        let made = try runLockingUserDatabase("/usr/sbin/groupadd", [name])
        guard made.status == 0 else { throw TestFailure("groupadd \(name): \(made.output)") }
        gid = try Self.id(of: name)
    }

    static func id(of group: String) throws -> UInt32 {
        let entry = try run("/usr/bin/getent", ["group", group])
        guard entry.status == 0, let gid = UInt32(entry.output.split(separator: ":")[2]) else {
            throw TestFailure("getent group \(group): \(entry.output)")
        }
        return gid
    }

    deinit {
        _ = try? runLockingUserDatabase("/usr/sbin/groupdel", [name])
    }
}

/// A user made for one test with useradd (no home directory made, no login), deleted
/// when the test ends.
final class TestUser {
    let name = "baton-u-" + UUID().uuidString.prefix(8).lowercased()
    let uid: UInt32
    var home: String { "/nonexistent/\(name)" }

    init(primaryGroup: String, supplementary: [String] = []) throws {
        var arguments = [
            "--no-create-home", "--home-dir", "/nonexistent/\(name)", "--shell", "/usr/sbin/nologin",
            "--gid", primaryGroup,
        ]
        if !supplementary.isEmpty { arguments += ["--groups", supplementary.joined(separator: ",")] }
        let made = try runLockingUserDatabase("/usr/sbin/useradd", arguments + [name])
        guard made.status == 0 else { throw TestFailure("useradd \(name): \(made.output)") }
        let entry = try run("/usr/bin/getent", ["passwd", name])
        guard entry.status == 0, let uid = UInt32(entry.output.split(separator: ":")[2]) else {
            throw TestFailure("getent passwd \(name): \(entry.output)")
        }
        self.uid = uid
    }

    deinit {
        _ = try? runLockingUserDatabase("/usr/sbin/userdel", [name])
    }
}
