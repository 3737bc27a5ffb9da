import BatonCore
import BatonLoad
import Foundation
import Synchronization
import Testing

/// The units of `Units/`, as shipped, under systemd 252 running as PID 1 of a private
/// namespace: socket activation, `systemctl reload` under load and when it rolls back,
/// `systemctl restart` under load with the fd store, and `systemctl stop` draining.
@Suite(.serialized) struct SystemdServiceTests {
    static let reloads = 20
    /// The demo units' CapabilityBoundingSet= as /proc shows it: CAP_CHOWN (0), CAP_KILL (5),
    /// CAP_SETGID (6), CAP_SETUID (7), CAP_NET_BIND_SERVICE (10) and CAP_BPF (39).
    static let batonCapabilities = "00000080000004e1"

    /// Skips (saying why) where systemd cannot run as PID 1 of a namespace.
    func systemd(_ units: [String], files: [String: String] = [:], in scratch: ScratchDirectory) throws -> SystemdUnderTest? {
        if let reason = SystemdUnderTest.unavailableReason {
            print("skipped: \(reason)")
            return nil
        }
        return try SystemdUnderTest(units: units, files: files, in: scratch)
    }

    func load(_ systemd: SystemdUnderTest, port: Int) -> LoadGenerator {
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 8
        // A restart leaves clients waiting in the accept queue for a while.
        configuration.requestTimeout = .seconds(20)
        configuration.prepareThread = systemd.enterNetwork
        return LoadGenerator(configuration)
    }

    func expectNoFailures(_ report: LoadReport, _ journal: @autoclosure () -> String, what: String) {
        print("\(what): \(report.succeeded) requests answered, \(report.totalFailures) failed")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)\n\(journal())")
        #expect(report.succeeded > 20, "the load must actually have run")
    }

    func curl(_ systemd: SystemdUnderTest, _ path: String = "/", port: Int = 8080) throws -> (status: Int32, output: String) {
        try systemd.run(["curl", "-s", "-i", "--max-time", "20", "http://127.0.0.1:\(port)\(path)"])
    }

    @Test func socketActivationStartsBatonOnTheUnitsSocket() throws {
        let scratch = ScratchDirectory()
        guard let systemd = try systemd(["baton-demo.socket", "baton-demo.service"], in: scratch) else { return }
        #expect(try systemd.run(["systemctl", "start", "baton-demo.socket"]).status == 0)
        #expect(try systemd.property("ActiveState", of: "baton-demo.service") == "inactive")

        // The first connection starts the service; it waits in the socket's queue meanwhile.
        let response = try curl(systemd)
        #expect(response.output.hasPrefix("HTTP/1.1 200"), "\(response.output)\n\(systemd.journal("baton-demo.service"))")
        // The worker may answer before Baton has told systemd READY=1.
        #expect(try systemd.waitForProperty("ActiveState", of: "baton-demo.service", toBe: "active"))
        let journal = systemd.journal("baton-demo.service")
        #expect(journal.contains("listener http tcp://127.0.0.1:8080 adopted fd 3 from systemd"), "\(journal)")
        #expect(!journal.contains("closed it"), "every socket systemd passed must be used: \(journal)")

        // The workers accept on systemd's own socket: the same socket inode as PID 1's.
        let status = try systemd.run(["batonctl", "status", "--json", "-s", "/run/baton-demo/baton.sock"])
        let started = try JSONDecoder().decode(StatusReport.self, from: Data(status.output.utf8))
        let worker = try #require(started.generations.first?.workers.first?.pid)
        let workerSocket = try systemd.run(["readlink", "/proc/\(worker)/fd/3"]).output
        let systemdSockets = try systemd.run(["sh", "-c", "readlink /proc/1/fd/*"]).output
        #expect(
            workerSocket.hasPrefix("socket:[") && systemdSockets.contains(workerSocket.trimmingCharacters(in: .whitespacesAndNewlines)),
            "worker fd 3 is \(workerSocket); systemd holds \(systemdSockets)")
    }

    @Test func systemctlReloadUnderLoadLosesNoRequest() throws {
        let scratch = ScratchDirectory()
        guard let systemd = try systemd(["baton-demo.socket", "baton-demo.service"], in: scratch) else { return }
        #expect(try systemd.run(["systemctl", "start", "baton-demo.socket", "baton-demo.service"]).status == 0)
        let load = load(systemd, port: 8080)
        load.start()
        var failedReloads: [String] = []
        for _ in 1...Self.reloads {
            let reload = try systemd.run(["systemctl", "reload", "baton-demo.service"])
            if reload.status != 0 { failedReloads.append(reload.output) }
        }
        let report = load.stop()
        #expect(failedReloads.isEmpty, "\(failedReloads)\n\(systemd.journal("baton-demo.service"))")
        expectNoFailures(report, systemd.journal("baton-demo.service"), what: "\(Self.reloads) × systemctl reload")
        #expect(report.distinctResponders > 4, "several generations must have answered")
        // STATUS= names the generations still draining until they are gone: wait for that,
        // bounded, rather than read it the moment the last reload returned.
        let expected = "generation \(Self.reloads + 1): 4/4 ready; last reload took-over"
        var status = try systemd.property("StatusText", of: "baton-demo.service")
        let deadline = Date().addingTimeInterval(60)
        while status != expected && Date() < deadline {
            usleep(50_000)
            status = try systemd.property("StatusText", of: "baton-demo.service")
        }
        #expect(status == expected)
    }

    /// The shipped socket unit has ReusePort=yes, so Baton steers under socket activation:
    /// status shows every slot's socket in rotation, a dead slot gets no connection, and a
    /// server whose shutdown drops what it accepted loses nothing under `systemctl reload`.
    /// Only the worker command differs from the shipped unit (a drop-in): baton-demo with
    /// --rude-drain, and slot 2 exiting at every start while a marker file exists.
    @Test func socketActivatedServiceSteers() throws {
        let scratch = ScratchDirectory()
        let marker = "/etc/baton-test/break-slot-2"
        let worker = """
            if [ "$BATON_SLOT" = 2 ] && [ -e \(marker) ]; then exit 3; fi
            exec /usr/local/bin/baton-demo --rude-drain
            """
        let dropIn = """
            [Service]
            ExecStart=
            ExecStart=/usr/local/bin/baton --listen http=tcp://127.0.0.1:8080 --workers 4 --user nobody --group nogroup -- /bin/sh /etc/baton-test/worker.sh
            """
        guard
            let systemd = try systemd(
                ["baton-demo.socket", "baton-demo.service"],
                files: ["/etc/baton-test/worker.sh": worker, "/run/systemd/system/baton-demo.service.d/worker.conf": dropIn], in: scratch)
        else { return }
        let unit = "baton-demo.service"
        #expect(try systemd.run(["systemctl", "start", "baton-demo.socket", unit]).status == 0, "\(systemd.journal(unit))")
        func status() throws -> StatusReport {
            let output = try systemd.run(["batonctl", "status", "--json", "-s", "/run/baton-demo/baton.sock"]).output
            return try JSONDecoder().decode(StatusReport.self, from: Data(output.utf8))
        }
        let started = try status()
        let listener = try #require(started.listeners.first)
        #expect(listener.reusePort == .perWorker && listener.sockets.compactMap(\.slot).sorted() == [0, 1, 2, 3], "\(started.listeners)")
        #expect(listener.sockets.allSatisfy { $0.inRotation == true }, "every slot's socket must be in rotation: \(listener.sockets)")
        let table = try systemd.run(["batonctl", "status", "-s", "/run/baton-demo/baton.sock"]).output
        var rotation: [String] = []
        for line in table.split(separator: "\n") {
            let columns: [Substring] = line.split(separator: " ")
            if columns.count > 5 && columns[0] == "http" && columns[2] == "per-worker" { rotation.append(String(columns[5])) }
        }
        #expect(rotation == ["in", "in", "in", "in"], "status must show the rotation: \(table)")
        #expect(!systemd.journal(unit).contains("steering is off"), "\(systemd.journal(unit))")
        let warnings = try systemd.run(["journalctl", "--no-pager", "-p", "warning", "-u", unit]).output
        #expect(!warnings.contains("shared by every slot"), "\(warnings)")

        // Slot 2 dies and keeps dying: it leaves the rotation, and new connections go to
        // the three others only.
        #expect(try systemd.run(["touch", marker]).status == 0)
        let slot2 = try #require(started.generations.first?.workers.first { $0.slot == 2 }?.pid)
        #expect(try systemd.run(["kill", "-KILL", "\(slot2)"]).status == 0)
        var dead = false
        for _ in 0..<600 where !dead {
            let generation = try status().generations.first
            dead = generation.map { $0.restartingSlots.contains(2) || $0.crashLoopingSlots.contains(2) } ?? false
            if !dead { usleep(50_000) }
        }
        #expect(dead, "slot 2 must be restarting: \(systemd.journal(unit))")
        let deadSlotLoad = load(systemd, port: 8080)
        deadSlotLoad.start()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, deadSlotLoad.answered < 2000 { usleep(50_000) }
        let deadSlotReport = deadSlotLoad.stop()
        expectNoFailures(deadSlotReport, systemd.journal(unit), what: "slot 2 of 4 dead")
        #expect(deadSlotReport.answersBySlot["2"] == nil, "the dead slot answered: \(deadSlotReport.answersBySlot)")
        #expect(Set(deadSlotReport.answersBySlot.keys) == ["0", "1", "3"], "\(deadSlotReport.answersBySlot)")

        // Slot 2 recovers; then the rude server is reloaded under load.
        #expect(try systemd.run(["rm", marker]).status == 0)
        var recovered = false
        for _ in 0..<1200 where !recovered {
            let generation = try status().generations.first
            recovered = generation.map { $0.workers.count { $0.state == .ready } == 4 } ?? false
            if !recovered { usleep(50_000) }
        }
        #expect(recovered, "slot 2 must serve again: \(systemd.journal(unit))")
        let load = load(systemd, port: 8080)
        load.start()
        var failedReloads: [String] = []
        for _ in 1...Self.reloads {
            let reload = try systemd.run(["systemctl", "reload", unit])
            if reload.status != 0 { failedReloads.append(reload.output) }
        }
        let report = load.stop()
        #expect(failedReloads.isEmpty, "\(failedReloads)\n\(systemd.journal(unit))")
        expectNoFailures(report, systemd.journal(unit), what: "rude server, \(Self.reloads) × systemctl reload, steered")
        let reloaded = try status()
        #expect(reloaded.listeners.first?.sockets.filter { $0.inRotation == true }.compactMap(\.generation) == Array(repeating: Self.reloads + 1, count: 4))
    }

    @Test func reloadThatRollsBackFailsSystemctlReloadAndKeepsServing() throws {
        let scratch = ScratchDirectory()
        guard let systemd = try systemd(["baton-demo.socket", "baton-demo.service"], in: scratch) else { return }
        #expect(try systemd.run(["systemctl", "start", "baton-demo.socket", "baton-demo.service"]).status == 0)
        let mainPID = try systemd.property("MainPID", of: "baton-demo.service")
        let load = load(systemd, port: 8080)
        load.start()
        // A broken upgrade: the new binary exits at once.
        try systemd.run([
            "sh", "-c",
            "mv /usr/local/bin/baton-demo /usr/local/bin/baton-demo.good && printf '#!/bin/sh\\nexit 3\\n' > /usr/local/bin/baton-demo && chmod +x /usr/local/bin/baton-demo",
        ])
        let reload = try systemd.run(["systemctl", "reload", "baton-demo.service"])
        try systemd.run(["mv", "/usr/local/bin/baton-demo.good", "/usr/local/bin/baton-demo"])
        let report = load.stop()

        #expect(reload.status != 0, "systemctl reload must fail when the reload rolled back")
        #expect(try systemd.property("ActiveState", of: "baton-demo.service") == "active")
        #expect(try systemd.property("MainPID", of: "baton-demo.service") == mainPID)
        #expect(try systemd.property("StatusText", of: "baton-demo.service").contains("generation 1: 4/4 ready; last reload rolled-back"))
        expectNoFailures(report, systemd.journal("baton-demo.service"), what: "systemctl reload rolled back")
        #expect(try curl(systemd).output.hasPrefix("HTTP/1.1 200"))
        // Fixed, the next reload goes through.
        #expect(try systemd.run(["systemctl", "reload", "baton-demo.service"]).status == 0)
    }

    @Test func restartUnderLoadKeepsTheSocketsInTheFdStore() throws {
        let scratch = ScratchDirectory()
        let unit = "baton-demo-standalone.service"
        guard let systemd = try systemd([unit], in: scratch) else { return }
        #expect(try systemd.run(["systemctl", "start", unit]).status == 0)
        let firstPID = try systemd.property("MainPID", of: unit)
        #expect(try systemd.property("NFileDescriptorStore", of: unit) == "4", "one stored socket per worker slot")
        // CapabilityBoundingSet= keeps CAP_BPF: Baton steers; its workers run as nobody, with no capability.
        #expect(!systemd.journal(unit).contains("steering is off"), "\(systemd.journal(unit))")
        let status = try systemd.run(["batonctl", "status", "--json", "-s", "/run/baton-demo-standalone/baton.sock"])
        let started = try JSONDecoder().decode(StatusReport.self, from: Data(status.output.utf8))
        let worker = try #require(started.generations.first?.workers.first?.pid)
        let capabilities = try systemd.run(["grep", "^Cap", "/proc/\(worker)/status"]).output
        #expect(
            capabilities.contains("CapAmb:\t0000000000000000") && capabilities.contains("CapEff:\t0000000000000000"),
            "a worker keeps no capability of Baton's: \(capabilities)")
        let credentials = try systemd.run(["grep", "-E", "^(Uid|Gid)", "/proc/\(worker)/status"]).output
        #expect(
            credentials.contains("Uid:\t65534\t65534\t65534\t65534") && credentials.contains("Gid:\t65534\t65534\t65534\t65534"),
            "the unit runs its workers as nobody: \(credentials)")
        let baton = try systemd.run(["grep", "-E", "^(Uid|CapBnd)", "/proc/\(firstPID)/status"]).output
        #expect(
            baton.contains("Uid:\t0\t0\t0\t0") && baton.contains("CapBnd:\t\(Self.batonCapabilities)"),
            "Baton keeps only the capabilities its unit names: \(baton)")
        let load = load(systemd, port: 8081)
        load.start()
        var failedRestarts: [String] = []
        for _ in 1...3 {
            let restart = try systemd.run(["systemctl", "restart", unit])
            if restart.status != 0 { failedRestarts.append(restart.output) }
            // Serving again before the next restart, so that each one is under load.
            _ = try curl(systemd, port: 8081)
        }
        // An upgrade to a broken binary fails, and systemd sees nothing of it; with the good
        // binary back, a restart works as before.
        let beforeFailure = try systemd.property("MainPID", of: unit)
        #expect(try systemd.run(["cp", "/usr/local/bin/baton", "/usr/local/bin/baton.good"]).status == 0)
        #expect(
            try systemd.run([
                "sh", "-c",
                "printf '#!/bin/sh\\nexit 1\\n' > /usr/local/bin/baton.new && chmod 755 /usr/local/bin/baton.new && mv /usr/local/bin/baton.new /usr/local/bin/baton",
            ]).status == 0)
        let failed = try systemd.run(["batonctl", "upgrade", "-s", "/run/baton-demo-standalone/baton.sock"])
        #expect(failed.status != 0 && failed.output.contains("exited with status 1"), "\(failed.output)")
        #expect(try systemd.property("MainPID", of: unit) == beforeFailure)
        #expect(try systemd.property("ActiveState", of: unit) == "active")
        #expect(try systemd.run(["mv", "/usr/local/bin/baton.good", "/usr/local/bin/baton"]).status == 0)
        let restart = try systemd.run(["systemctl", "restart", unit])
        if restart.status != 0 { failedRestarts.append(restart.output) }
        _ = try curl(systemd, port: 8081)
        // And an upgrade in place, which systemd sees as nothing at all: the same main pid.
        let mainPID = try systemd.property("MainPID", of: unit)
        let upgrade = try systemd.run(["batonctl", "upgrade", "-s", "/run/baton-demo-standalone/baton.sock"])
        #expect(upgrade.status == 0, "\(upgrade.output)")
        #expect(try systemd.property("MainPID", of: unit) == mainPID)
        #expect(try systemd.property("ActiveState", of: unit) == "active")
        let report = load.stop()
        let journal = systemd.journal(unit)
        #expect(failedRestarts.isEmpty, "\(failedRestarts)\n\(journal)")
        #expect(try systemd.property("MainPID", of: unit) != firstPID)
        #expect(journal.contains("adopted fd 6 from systemd"), "the restarted Baton must adopt the stored sockets: \(journal)")
        #expect(try systemd.property("NFileDescriptorStore", of: unit) == "4")
        expectNoFailures(report, journal, what: "3 × systemctl restart, a failed upgrade, a restart and an upgrade")
    }

    @Test func stopDrainsRequestsInFlight() throws {
        let scratch = ScratchDirectory()
        guard let systemd = try systemd(["baton-demo.socket", "baton-demo.service"], in: scratch) else { return }
        #expect(try systemd.run(["systemctl", "start", "baton-demo.socket", "baton-demo.service"]).status == 0)
        let slow = Mutex<(status: Int32, output: String)?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            slow.withLock { $0 = try? curl(systemd, "/sleep?ms=3000") }
            done.signal()
        }
        // Stop only once the slow request is in a worker's hands.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !(try systemd.run(["ss", "-Htn", "state", "established", "( sport = :8080 )"]).output.contains("127.0.0.1")) {
            usleep(20_000)
        }
        let stop = try systemd.run(["systemctl", "stop", "baton-demo.service"])
        done.wait()
        let response = slow.withLock { $0 }
        #expect(stop.status == 0)
        #expect(
            response?.output.hasPrefix("HTTP/1.1 200") == true,
            "the request in flight must complete: \(String(describing: response))\n\(systemd.journal("baton-demo.service"))")
        #expect(try systemd.property("Result", of: "baton-demo.service") == "success")
        #expect(try systemd.property("ActiveState", of: "baton-demo.service") == "inactive")
    }

    /// Baton killed with SIGKILL under load: no request fails, and one in a worker's
    /// hands is still answered (the workers get their drain signal as their parent dies,
    /// the unit lets them finish before systemd restarts the service, and new
    /// connections wait in the socket unit's queue meanwhile); the service comes back.
    @Test func killingBatonUnderLoadFailsNoRequest() throws {
        let scratch = ScratchDirectory()
        guard let systemd = try systemd(["baton-demo.socket", "baton-demo.service"], in: scratch) else { return }
        #expect(try systemd.run(["systemctl", "start", "baton-demo.socket", "baton-demo.service"]).status == 0)
        let killed = try systemd.property("MainPID", of: "baton-demo.service")
        let slow = Mutex<(status: Int32, output: String)?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            slow.withLock { $0 = try? curl(systemd, "/sleep?ms=10000") }
            done.signal()
        }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !(try systemd.run(["ss", "-Htn", "state", "established", "( sport = :8080 )"]).output.contains("127.0.0.1")) {
            usleep(20_000)
        }
        // The slow request is in a worker's hands; now the load, and the kill once it runs.
        let load = load(systemd, port: 8080)
        load.start()
        while Date() < deadline, load.answered < 20 { usleep(20_000) }
        #expect(try systemd.run(["kill", "-KILL", killed]).status == 0)
        done.wait()
        let response = slow.withLock { $0 }
        #expect(
            response?.output.hasPrefix("HTTP/1.1 200") == true,
            "the request in flight must complete: \(String(describing: response))\n\(systemd.journal("baton-demo.service"))")
        var restarted = ""
        for _ in 0..<300 {
            restarted = try systemd.property("MainPID", of: "baton-demo.service")
            let state = try systemd.property("ActiveState", of: "baton-demo.service")
            if restarted != killed && restarted != "0" && state == "active" { break }
            usleep(100_000)
        }
        #expect(restarted != killed && restarted != "0", "systemd must restart the service")
        // The load goes on until the new Baton's workers have answered some of it.
        let answeredBefore = load.answered
        let answeredDeadline = Date().addingTimeInterval(30)
        while Date() < answeredDeadline, load.answered < answeredBefore + 50 { usleep(20_000) }
        let report = load.stop()
        expectNoFailures(report, systemd.journal("baton-demo.service"), what: "SIGKILL of Baton")
        #expect(try curl(systemd).output.hasPrefix("HTTP/1.1 200"))
    }

    @Test func templateRunsTheServiceOfItsConfigurationFile() throws {
        let scratch = ScratchDirectory()
        let configuration = serviceConfiguration(port: 8082, command: ["/usr/local/bin/baton-demo"], workers: 2)
        guard let systemd = try systemd(["baton@.service"], files: ["/etc/baton/demo.toml": configuration], in: scratch) else { return }
        let unit = "baton@demo.service"
        #expect(try systemd.run(["systemctl", "start", unit]).status == 0, "\(systemd.journal(unit))")
        #expect(try curl(systemd, port: 8082).output.contains("generation=1"))
        #expect(try systemd.run(["systemctl", "reload", unit]).status == 0)
        #expect(try curl(systemd, port: 8082).output.contains("generation=2"))
        // A replaced generation's own sockets leave the store once it has drained.
        func storedSockets(settlingAt expected: String) throws -> String {
            var stored = try systemd.property("NFileDescriptorStore", of: unit)
            for _ in 0..<300 where stored != expected {
                usleep(100_000)
                stored = try systemd.property("NFileDescriptorStore", of: unit)
            }
            return stored
        }
        #expect(try storedSockets(settlingAt: "2") == "2")
        #expect(try systemd.run(["systemctl", "restart", unit]).status == 0)
        #expect(try curl(systemd, port: 8082).output.contains("generation=1"), "a new Baton counts from 1 again")
        #expect(systemd.journal(unit).contains("adopted fd 4 from systemd"))
        // A slot removed by a reload leaves the fd store too.
        try systemd.run(["sed", "-i", "s/^count = 2/count = 1/", "/etc/baton/demo.toml"])
        #expect(try systemd.run(["systemctl", "reload", unit]).status == 0)
        #expect(try storedSockets(settlingAt: "1") == "1")
        #expect(try curl(systemd, port: 8082).output.contains("generation=2"))
        #expect(try systemd.run(["systemctl", "stop", unit]).status == 0)
        #expect(try systemd.property("Result", of: unit) == "success")
    }
}
