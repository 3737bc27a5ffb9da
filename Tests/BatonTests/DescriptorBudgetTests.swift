import Glibc
import Testing

@testable import Baton

/// What a configuration needs of the descriptor limit, and what Baton says when steering
/// cannot be had.
@Suite struct DescriptorBudgetTests {
    func configuration(listeners: Int, workers: Int) throws -> Configuration {
        var configuration = Configuration(
            listeners: try (0..<listeners).map {
                ListenerConfiguration(name: "l\($0)", address: try ListenerAddress(parsing: "tcp://127.0.0.1:\(20000 + $0)"))
            } + [ListenerConfiguration(name: "unix", address: try ListenerAddress(parsing: "unix:///tmp/baton-budget.sock"))],
            workers: WorkerConfiguration(command: ["/bin/true"]), controlSocket: "/tmp/baton-budget-control.sock")
        configuration.workers.count = workers
        return configuration
    }

    @Test func countsTwoGenerationsOfSocketsSteeringAndWorkers() throws {
        let budget = DescriptorBudget(try configuration(listeners: 3, workers: 4))
        // Per-worker TCP: 2 generations x 4 slots x 3 listeners; the unix listener: one socket per generation.
        #expect(budget.sockets == 2 * 4 * 3 + 2)
        #expect(budget.steering == 3 * DescriptorBudget.perSteeredGroup)
        #expect(budget.workers == 2 * 4 * DescriptorBudget.perWorker)
        #expect(budget.total == DescriptorBudget.own + budget.sockets + budget.steering + budget.workers)
    }

    /// Within the hard limit the soft limit is raised, with room to spare; beyond it the
    /// configuration is refused naming the limit and what it needs.
    @Test func aConfigurationBeyondTheHardLimitIsRefusedAndOneWithinItRaisesTheSoftLimit() throws {
        let budget = DescriptorBudget(try configuration(listeners: 100, workers: 1))
        let needed = rlim_t(budget.total)
        #expect(try budget.softLimit(current: needed, hard: needed, source: "baton.toml", listeners: 101) == nil)
        let raised = try #require(try budget.softLimit(current: 256, hard: 100_000, source: "baton.toml", listeners: 101))
        #expect(raised > needed && raised <= 100_000)
        #expect(try budget.softLimit(current: 256, hard: needed, source: "baton.toml", listeners: 101) == needed)
        do {
            _ = try budget.softLimit(current: 256, hard: 512, source: "baton.toml", listeners: 101)
            Issue.record("a budget of \(needed) fits under a hard limit of 512")
        } catch {
            #expect("\(error)".contains("101 listeners"), "\(error)")
            #expect("\(error)".contains("this needs about \(needed) file descriptors"), "\(error)")
            #expect("\(error)".contains("(RLIMIT_NOFILE) is 512"), "\(error)")
        }
    }

    /// Only a refusal blames a missing CAP_BPF; running out of descriptors names the limit.
    @Test func steeringOffNamesTheRemedyForItsCause() {
        #expect(SteeringGroup.remedy(for: SystemError("bpf", errno: EPERM)).contains("CAP_BPF"))
        let outOfDescriptors = SteeringGroup.remedy(for: SystemError("bpf", errno: EMFILE))
        #expect(!outOfDescriptors.contains("CAP_BPF"))
        #expect(outOfDescriptors.contains("descriptor limit"))
    }
}
