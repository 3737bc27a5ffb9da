import BatonCore
import Testing

/// The names are the protocols', written as their own documentation writes them; every
/// other use in the code goes through these constants.
@Suite struct WorkerContractTests {
    @Test func namesAndNumbersAsTheProtocolsDefineThem() {
        #expect(WorkerContract.firstListenerDescriptor == 3)
        #expect(
            [WorkerContract.generation, WorkerContract.slot, WorkerContract.workerProcessID]
                == ["BATON_GENERATION", "BATON_SLOT", "BATON_WORKER_PID"])
        #expect(
            [
                WorkerContract.Systemd.descriptorCount, WorkerContract.Systemd.processID, WorkerContract.Systemd.descriptorNames,
                WorkerContract.Systemd.notifySocket, WorkerContract.Systemd.watchdogInterval, WorkerContract.Systemd.watchdogProcessID,
            ]
                == ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"])
        #expect(
            [
                WorkerContract.Einhorn.descriptorCount, WorkerContract.Einhorn.descriptor(0), WorkerContract.Einhorn.descriptor(12),
                WorkerContract.Einhorn.masterProcessID, WorkerContract.Einhorn.childIndex,
                WorkerContract.Einhorn.commandSocketPath, WorkerContract.Einhorn.commandSocketDescriptor,
            ]
                == [
                    "EINHORN_FD_COUNT", "EINHORN_FD_0", "EINHORN_FD_12", "EINHORN_MASTER_PID", "EINHORN_CHILD_INDEX",
                    "EINHORN_SOCK_PATH", "EINHORN_SOCK_FD",
                ])
        #expect(
            [WorkerContract.ServerStarter.port, WorkerContract.ServerStarter.generation]
                == ["SERVER_STARTER_PORT", "SERVER_STARTER_GENERATION"])
        #expect(
            [WorkerContract.Preload.descriptorCount, WorkerContract.Preload.drainSignal]
                == ["BATON_PRELOAD_FD_COUNT", "BATON_PRELOAD_DRAIN_SIGNAL"])
        #expect(ControlSocketPath.environmentVariable == "BATON_CONTROL_SOCKET")
    }
}
