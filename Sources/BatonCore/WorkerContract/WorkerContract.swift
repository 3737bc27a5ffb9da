/// The names and numbers a worker sees: where its sockets are and which variables tell
/// it about them, by each protocol Baton speaks. Baton writes them, `BatonWorker`
/// reads them; the values are fixed by the protocols' own documentation.
public enum WorkerContract {
    /// The first listener's descriptor; the others follow in listener order. systemd's
    /// `SD_LISTEN_FDS_START`, and the same for every protocol Baton speaks.
    public static let firstListenerDescriptor: Int32 = 3

    /// `BATON_GENERATION`: the worker's generation, 1 for the first.
    public static let generation = "BATON_GENERATION"
    /// `BATON_SLOT`: the worker's slot, from 0.
    public static let slot = "BATON_SLOT"
    /// `BATON_QUIC_COOKIES`: with a `flows = "quic"` listener, each socket's cookie as 8
    /// hexadecimal digits, in `LISTEN_FDNAMES` order, separated by colons (empty for a
    /// listener without QUIC flows). A QUIC server puts its socket's cookie into bytes 1
    /// to 4 of every connection ID it issues (Docs/steering.md).
    public static let quicCookies = "BATON_QUIC_COOKIES"
    /// `BATON_WORKER_PID`: for a readiness probe, the pid of the worker it probes.
    public static let workerProcessID = "BATON_WORKER_PID"

    /// systemd's socket activation and notification protocols: sd_listen_fds(3),
    /// sd_notify(3).
    public enum Systemd {
        /// `LISTEN_FDS`: how many sockets, from ``WorkerContract/firstListenerDescriptor`` on.
        public static let descriptorCount = "LISTEN_FDS"
        /// `LISTEN_PID`: the process the sockets are meant for.
        public static let processID = "LISTEN_PID"
        /// `LISTEN_FDNAMES`: the sockets' names, separated by colons.
        public static let descriptorNames = "LISTEN_FDNAMES"
        /// `NOTIFY_SOCKET`: where `READY=1`, `STATUS=` and `STOPPING=1` go.
        public static let notifySocket = "NOTIFY_SOCKET"
        /// `WATCHDOG_USEC` and `WATCHDOG_PID`: what systemd's watchdog expects.
        public static let watchdogInterval = "WATCHDOG_USEC"
        public static let watchdogProcessID = "WATCHDOG_PID"
    }

    /// einhorn's protocol.
    public enum Einhorn {
        /// `EINHORN_FD_COUNT`.
        public static let descriptorCount = "EINHORN_FD_COUNT"
        /// `EINHORN_FD_0`, `EINHORN_FD_1`, …: every name starts with this.
        public static let descriptorPrefix = "EINHORN_FD_"
        /// `EINHORN_MASTER_PID`: the parent a worker checks before trusting the sockets.
        public static let masterProcessID = "EINHORN_MASTER_PID"
        /// `EINHORN_CHILD_INDEX`: the worker's slot.
        public static let childIndex = "EINHORN_CHILD_INDEX"
        /// `EINHORN_SOCK_PATH` and `EINHORN_SOCK_FD`: einhorn's command socket, which
        /// Baton does not offer.
        public static let commandSocketPath = "EINHORN_SOCK_PATH"
        public static let commandSocketDescriptor = "EINHORN_SOCK_FD"

        /// `EINHORN_FD_<index>`: the descriptor of the listener at `index`.
        public static func descriptor(_ index: Int) -> String {
            descriptorPrefix + "\(index)"
        }
    }

    /// Server::Starter's protocol (`start_server`).
    public enum ServerStarter {
        /// `SERVER_STARTER_PORT`: `host:port=fd` entries, separated by semicolons.
        public static let port = "SERVER_STARTER_PORT"
        /// `SERVER_STARTER_GENERATION`.
        public static let generation = "SERVER_STARTER_GENERATION"
    }

    /// Baton's preload library (`libbaton-preload.so`), for servers that bind their own port.
    public enum Preload {
        /// `BATON_PRELOAD_FD_COUNT`: how many listeners the library may hand out.
        public static let descriptorCount = "BATON_PRELOAD_FD_COUNT"
        /// `BATON_PRELOAD_DRAIN_SIGNAL`: the signal the library holds back for its grace.
        public static let drainSignal = "BATON_PRELOAD_DRAIN_SIGNAL"
        /// `BATON_PRELOAD_PID`: the one process the library acts in, as `LISTEN_PID`
        /// names the one process `LISTEN_FDS` is for. Filled in by the spawner.
        public static let processID = "BATON_PRELOAD_PID"
    }
}
