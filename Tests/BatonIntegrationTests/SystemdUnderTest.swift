import CBatonTestSupport
import Foundation

/// systemd as PID 1 of private PID, mount, network and UTS namespaces (the recipe of
/// `../shared/guide/testing.md`), with this package's `baton`, `batonctl` and
/// `baton-demo` in its `/usr/local/bin` and the units under test in its
/// `/run/systemd/system`, exactly as shipped. Killed, with everything in it, when the
/// test ends.
final class SystemdUnderTest: @unchecked Sendable {
    /// Why these tests cannot run here, or nil when they can.
    static let unavailableReason: String? = {
        if getuid() != 0 { return "namespaces and systemd as PID 1 need root" }
        for tool in ["/lib/systemd/systemd", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/curl"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed"
        }
        return nil
    }()

    /// The host's pid of the namespace's systemd. (Unchanged after init, hence Sendable.)
    let pid: pid_t
    private let unshare = Process()
    private let scratch: ScratchDirectory

    /// Boots systemd with `units` (file names in `Units/`) and `files` (absolute path in
    /// the namespace: contents) in place, and waits until it has finished starting up.
    init(units: [String], files: [String: String] = [:], in scratch: ScratchDirectory) throws {
        self.scratch = scratch
        let unitsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Units").standardized.path
        var script = """
            set -e
            # systemd's own start-up sets up lo; this only makes it certain.
            ip link set lo up 2>/dev/null || true
            mount -t tmpfs tmpfs /run
            mkdir -p /run/systemd/system
            mount -t tmpfs tmpfs /usr/local/bin
            cp \(["baton", "batonctl", "baton-demo"].map { Products.path($0) }.joined(separator: " ")) /usr/local/bin/
            # A private, writable /etc for files the test puts there.
            mkdir -p /run/etc-upper /run/etc-work
            mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc
            # A journal of this boot only, kept off the host's disk.
            if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi

            """
        for unit in units {
            script += "cp '\(unitsDirectory)/\(unit)' /run/systemd/system/\n"
        }
        for (index, (path, contents)) in files.enumerated() {
            try scratch.write("file-\(index)", contents)
            script += "mkdir -p \"$(dirname '\(path)')\" && cp '\(scratch.path)/file-\(index)' '\(path)'\n"
        }
        script += """
            # After copying from it: systemd-tmpfiles would otherwise empty the host's /tmp.
            mount -t tmpfs tmpfs /tmp
            export container=baton-test
            exec /lib/systemd/systemd --system --unit=multi-user.target

            """
        try scratch.write("systemd.sh", script)
        let log = "\(scratch.path)/systemd.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        unshare.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        // Its own IPC namespace too: two namespaces booting at once must not share System V
        // shared memory (a host's PostgreSQL, started by both, failed in the second).
        unshare.arguments = [
            "--fork", "--pid", "--mount", "--net", "--uts", "--ipc", "--mount-proc", "--propagation", "private",
            "/bin/bash", "\(scratch.path)/systemd.sh",
        ]
        unshare.standardOutput = output
        unshare.standardError = output
        try unshare.run()

        let unsharePID = unshare.processIdentifier
        let deadline = Date().addingTimeInterval(90)
        var found: pid_t?
        while found == nil && Date() < deadline && unshare.isRunning {
            let children = (try? String(contentsOfFile: "/proc/\(unsharePID)/task/\(unsharePID)/children", encoding: .utf8)) ?? ""
            found = children.split(separator: " ").first.flatMap { pid_t($0) }
            if found == nil { usleep(10_000) }
        }
        guard let found else {
            throw TestFailure("systemd did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        pid = found
        // Retried until systemd's bus is up; then it returns once start-up is over,
        // "running" or "degraded" alike.
        var state = ""
        while Date() < deadline && unshare.isRunning {
            // Bounded: a start job that never ends would otherwise hold the test forever.
            state = try run(["timeout", "30", "systemctl", "is-system-running", "--wait"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            if ["running", "degraded"].contains(state) { return }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        throw TestFailure("systemd did not finish starting (\(state)): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    /// Runs a command inside the namespaces; returns its exit status and output.
    @discardableResult
    func run(_ command: [String]) throws -> (status: Int32, output: String) {
        try BatonIntegrationTests.run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "-p", "-n", "-u", "-i", "--"] + command)
    }

    /// `systemctl show -p NAME --value UNIT`.
    func property(_ name: String, of unit: String) throws -> String {
        try run(["systemctl", "show", "-p", name, "--value", unit]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Waits (bounded) until the property has `value`; whether it got there.
    func waitForProperty(_ name: String, of unit: String, toBe value: String, timeout: Double = 30) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try property(name, of: unit) == value { return true }
            usleep(50_000)
        }
        return false
    }

    /// The unit's journal, for failure messages.
    func journal(_ unit: String) -> String {
        (try? run(["journalctl", "--no-pager", "-o", "short-monotonic", "-u", unit]).output) ?? ""
    }

    /// For `LoadConfiguration.prepareThread`: moves the calling thread into the
    /// namespace's network, where the service listens.
    var enterNetwork: @Sendable () -> Void {
        { [pid] in
            let error = baton_enter_network_namespace(pid)
            precondition(error == 0, "setns: \(String(cString: strerror(error)))")
        }
    }

    deinit {
        kill(pid, SIGKILL)
        unshare.waitUntilExit()
    }
}
