import BatonCore
import BatonLoad
import Foundation
import Testing

/// SYN-safe sockets: Baton's steering program, not the kernel's hash, decides which
/// socket takes a new connection, so none waits on a dead slot or on a generation that
/// is leaving. Each test asserts counts of failed requests, never durations.
@Suite(.serialized) struct SteeringTests {
    /// A configuration file for `baton-demo` on one `http` listener.
    func configuration(
        port: Int, workers: Int, reusePort: String = "per-worker", command: [String] = [Products.path("baton-demo")],
        extra: String = ""
    ) -> String {
        """
        [[listener]]
        name = "http"
        address = "tcp://127.0.0.1:\(port)"
        reuseport = "\(reusePort)"

        [workers]
        command = [\(command.map { "\"\($0)\"" }.joined(separator: ", "))]
        count = \(workers)
        drain_timeout = "10s"
        \(extra)
        """
    }

    /// Load with `clients` clients. `patient`: a request waits for its answer however
    /// long a busy machine (or a stopped or slow worker) takes, so that a failure is a
    /// reset or a refusal, never a slow answer.
    func load(_ port: Int, clients: Int = 16, patient: Bool = false) -> LoadGenerator {
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = clients
        if patient { configuration.requestTimeout = .seconds(300) }
        let load = LoadGenerator(configuration)
        load.start()
        return load
    }

    /// Steering needs a steering program; where this machine cannot load one, the
    /// suite says so instead of failing on what it cannot test.
    func requireSteering(_ baton: BatonUnderTest) throws {
        if baton.log.contains("steering is off") {
            throw TestFailure("steering is off on this machine, so steering cannot be tested here: \(baton.log)")
        }
    }

    /// One slot crash-loops; new connections go only to the three slots that serve.
    @Test func aCrashLoopingSlotGetsNoConnection() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        // Slot 2 serves until the marker file exists; from then on its worker exits at every start.
        let marker = "\(scratch.path)/break-slot-2"
        try scratch.write(
            "worker.sh",
            """
            if [ "$BATON_SLOT" = 2 ] && [ -e \(marker) ]; then exit 3; fi
            exec \(Products.path("baton-demo"))
            """)
        try scratch.write(
            "baton.toml",
            configuration(
                port: port, workers: 4, command: ["/bin/sh", "\(scratch.path)/worker.sh"],
                extra: "restart_delay = \"100ms\"\nrestart_delay_max = \"1s\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        let before = try baton.waitUntilServing()
        try requireSteering(baton)
        _ = FileManager.default.createFile(atPath: marker, contents: nil)
        let slot2 = try #require(before.generations[0].workers.first { $0.slot == 2 }?.pid)
        kill(slot2, SIGKILL)
        _ = try baton.waitForStatus("slot 2 crash-looping") { $0.generations.first?.crashLoopingSlots == [2] }

        let load = load(port, clients: 32)
        usleep(10_000_000)
        let report = load.stop()
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.answersBySlot["2"] == nil, "the dead slot answered: \(report.answersBySlot)")
        #expect(Set(report.answersBySlot.keys) == ["0", "1", "3"], "\(report.answersBySlot)")
        #expect(report.succeeded == report.answersBySlot.values.reduce(0, +), "every answer came from a serving slot")
        print("one slot of 4 crash-looping: \(report.succeeded) requests answered by slots \(report.answersBySlot), \(report.totalFailures) failed")
        #expect(baton.stop() == 0)
    }

    /// Workers killed one after another: what their sockets held migrates instead of
    /// waiting for a restart; only requests inside a killed worker can fail.
    @Test func killedWorkersLoseOnlyWhatTheyHeld() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write("baton.toml", configuration(port: port, workers: 4, extra: "restart_delay = \"100ms\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        try requireSteering(baton)
        let clients = 16
        let load = load(port, clients: clients)
        let kills = 10
        for round in 0..<kills {
            let status = try baton.waitForStatus("4 workers ready") { status in
                status.generations.count == 1 && status.generations[0].workers.count == 4
                    && status.generations[0].workers.allSatisfy { $0.state == .ready }
            }
            let victim = try #require(status.generations[0].workers[round % 4].pid)
            kill(victim, SIGKILL)
            _ = try baton.waitForStatus("worker \(victim) replaced") { status in
                status.generations[0].workers.allSatisfy { $0.pid != victim && $0.state == .ready }
            }
        }
        let report = load.stop()
        #expect(
            report.failures[.timedOut] == nil && report.failures[.refused] == nil,
            "no connection may wait on a dead slot: \(report.failures) \(report.failureSamples)")
        #expect(report.totalFailures <= kills * clients, "at most what the killed workers held: \(report.failures)")
        #expect(report.succeeded > 100, "the load must actually have run")
        print("\(kills) workers killed under load: \(report.succeeded) answered, \(report.totalFailures) failed (\(report.failures))")
        #expect(baton.stop() == 0)
    }

    /// `stall_timeout`: a worker stopped with SIGSTOP under load leaves the rotation and
    /// its slot, what its socket queued moves to the other slots, and a new worker takes
    /// the slot; woken up, the stopped worker answers what it held and drains.
    @Test func aStoppedWorkerIsTakenOutOfRotationAndReplaced() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write(
            "baton.toml",
            configuration(
                port: port, workers: 4,
                extra: "stall_timeout = \"500ms\"\nrestart_delay = \"100ms\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        try requireSteering(baton)
        // The requests the stopped worker holds wait for it to be woken up.
        let load = load(port, patient: true)
        let before = try baton.waitForStatus("every socket given connections") { status in
            status.listeners.first?.sockets.allSatisfy { ($0.steered ?? 0) > 0 } == true
        }
        let victim = try #require(before.generations[0].workers.first { $0.slot == 1 }?.pid)
        kill(victim, SIGSTOP)
        let replaced = try baton.waitForStatus("slot 1 replaced while its stopped worker drains") { status in
            let workers = status.generations.first?.workers ?? []
            return workers.contains { $0.slot == 1 && $0.pid != victim && $0.state == .ready }
                && workers.contains { $0.pid == victim && $0.state == .draining }
        }
        #expect(baton.log.contains("accepted no connection for 500ms"), "\(baton.log)")
        #expect(
            replaced.listeners.first?.sockets.allSatisfy { $0.inRotation == true } == true,
            "the slot's socket is back in rotation under its new worker: \(replaced.listeners)")
        kill(victim, SIGCONT)
        _ = try baton.waitForStatus("the stopped worker drained") { status in
            status.generations.allSatisfy { $0.workers.allSatisfy { $0.pid != victim } }
        }
        let after = try baton.waitForStatus("more answers after the stall") { status in
            (status.listeners.first?.sockets.reduce(0) { $0 + ($1.steered ?? 0) } ?? 0)
                > (replaced.listeners.first?.sockets.reduce(0) { $0 + ($1.steered ?? 0) } ?? 0) + 100
        }
        let report = load.stop()
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(after.generations.count == 1 && after.generations[0].workers.count == 4)
        print("a worker stopped under load: replaced, \(report.succeeded) answered, \(report.totalFailures) failed")
        #expect(baton.stop() == 0)
    }

    /// Scaling down and up under load while the workers are slow to accept: the
    /// replaced generation is told to drain at once (drain_grace 0s) with connections
    /// still in its sockets, which move to the new generation's sockets when Baton
    /// closes them instead of being reset.
    @Test func scalingWhileWorkersAreSlowToAcceptMigratesTheirQueues() throws {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write(
            "baton.toml",
            configuration(
                port: port, workers: 4, command: [Products.path("baton-demo"), "--accept-pause-ms", "20"],
                extra: "drain_grace = \"0s\""))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        try requireSteering(baton)
        let load = load(port, patient: true)
        let before = try MigrationCounters.read()
        var outputs: [(Int32, String)] = []
        for count in [1, 4, 1, 4] {
            outputs.append(try run(Products.path("batonctl"), ["scale", "\(count)", "--wait", "-s", baton.controlSocket]))
            _ = try baton.waitForStatus("one generation left") { $0.generations.count == 1 }
        }
        let report = load.stop()
        let migrations = try MigrationCounters.read().since(before)
        #expect(outputs.allSatisfy { $0.0 == 0 }, "\(outputs.filter { $0.0 != 0 })")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(migrations.success > 0, "queued connections must have moved: \(migrations)")
        print(
            "scale 4→1→4→1→4, slow accepts: \(report.succeeded) answered, \(report.totalFailures) failed, migrated \(migrations.success), migration failures \(migrations.failure)"
        )
        #expect(baton.stop() == 0)
    }

    /// A listener removed by a reload under load: from the swap on, its sockets take
    /// no new connection (a client's SYN waits, then is refused once they close), and
    /// the replaced generation accepts what they already held, so nothing is reset.
    @Test func aListenerRemovedUnderLoadResetsNothing() throws {
        let scratch = ScratchDirectory()
        let removedPort = freePort()
        let keptPort = freePort()
        func listeners(removing: Bool) -> String {
            (removing
                ? ""
                : """
                [[listener]]
                name = "http"
                address = "tcp://127.0.0.1:\(removedPort)"

                """) + """
                    [[listener]]
                    name = "api"
                    address = "tcp://127.0.0.1:\(keptPort)"

                    [workers]
                    command = ["\(Products.path("baton-demo"))"]
                    count = 2
                    drain_timeout = "10s"
                    """
        }
        // baton-demo serves the listener named http, else the first: port `removedPort`
        // before the reload, `keptPort` after.
        try scratch.write("baton.toml", listeners(removing: false))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        try requireSteering(baton)
        let load = load(removedPort, patient: true)
        _ = try baton.waitForStatus("the removed listener served") { status in
            status.listeners.first { $0.name == "http" }?.sockets.contains { ($0.steered ?? 0) > 100 } == true
        }
        try scratch.write("baton.toml", listeners(removing: true))
        let reply = try baton.reload()
        #expect(reply.ok, "\(reply)")
        let after = try baton.waitForStatus("the replaced generation gone") { $0.generations.count == 1 }
        let report = load.stop()
        #expect(report.failures[.reset] == nil, "a connection the removed listener held was reset: \(report.failures) \(report.failureSamples)")
        #expect(Set(report.failures.keys).isSubset(of: [.refused]), "only connections after the removal may fail: \(report.failures)")
        #expect(report.succeeded > 100, "the load must actually have run")
        #expect(after.listeners.map(\.name) == ["api"])
        #expect(baton.log.contains("was removed: it takes no new connection"), "\(baton.log)")
        print("listener removed under load: \(report.succeeded) answered, \(report.failures) after the removal")
        #expect(baton.stop() == 0)
    }

    /// A server whose shutdown drops what it accepted and has not answered: the old
    /// generation gets its drain signal only once its sockets are empty.
    @Test func aRudeServerLosesNothingAcrossReloads() throws {
        let report = try reloadRudeServer(reusePort: "per-worker")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
    }

    /// The same server on a socket every generation shares (nothing to steer): the
    /// old workers accept until their drain signal and drop what they hold. This shows
    /// that the test above can see the problem.
    @Test func theSameRudeServerLosesRequestsWithoutSteering() throws {
        let report = try reloadRudeServer(reusePort: "shared")
        #expect(report.totalFailures > 0, "a shared socket must show the rude server's losses")
    }

    func reloadRudeServer(reusePort: String) throws -> LoadReport {
        let scratch = ScratchDirectory()
        let port = freePort()
        try scratch.write(
            "baton.toml",
            configuration(
                port: port, workers: 2, reusePort: reusePort,
                command: [Products.path("baton-demo"), "--rude-drain"]))
        let baton = try BatonUnderTest(["--config", "baton.toml"], in: scratch)
        try baton.waitUntilServing()
        if reusePort == "per-worker" { try requireSteering(baton) }
        let load = load(port)
        let reloads = 50
        var failed: [ControlReply] = []
        for _ in 1...reloads {
            let reply = try baton.reload()
            if !reply.ok { failed.append(reply) }
        }
        let report = load.stop()
        #expect(failed.isEmpty, "every reload must take over: \(failed)")
        #expect(report.succeeded > reloads, "the load must actually have run")
        print("rude server, reuseport = \(reusePort), \(reloads) reloads: \(report.succeeded) answered, \(report.totalFailures) failed \(report.failures)")
        #expect(baton.stop() == 0)
        return report
    }

    /// Without CAP_BPF the steering program cannot be loaded: Baton says what it falls
    /// back to, and reloads still lose nothing with a server that drains well.
    @Test func withoutCapBPFBatonFallsBackAndSaysSo() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs root and setpriv to take CAP_BPF away")
            return
        }
        let scratch = ScratchDirectory()
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--drain-timeout", "10s", "--stall-timeout", "5s", "--",
                Products.path("baton-demo"),
            ],
            in: scratch, launcher: ["/usr/bin/setpriv", "--bounding-set", "-bpf,-sys_admin", "--inh-caps", "-bpf,-sys_admin", "--"])
        try baton.waitUntilServing()
        #expect(baton.log.contains("steering is off"), "\(baton.log)")
        // A stall timeout cannot work without steering: said, not silently ignored.
        #expect(baton.log.contains("stall_timeout = 5s does nothing for generation 1"), "\(baton.log)")
        #expect(baton.log.contains("Operation not permitted"), "the reason is named: \(baton.log)")
        let load = load(port)
        for _ in 1...10 {
            #expect(try baton.reload().ok)
        }
        let report = load.stop()
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(baton.stop() == 0)
    }
}
