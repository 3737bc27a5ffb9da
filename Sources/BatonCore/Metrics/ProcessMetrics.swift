/// Baton's own process as a scraper sees every other program's: the `process_*` families
/// with the names and meanings of Prometheus' client libraries (client_golang's process
/// collector), and `baton_build_info`. Only the `/metrics` endpoint, which runs inside
/// Baton, has them; `batonctl status --prometheus` renders the status alone.
public struct ProcessMetrics: Sendable, Equatable {
    /// Baton's version (``BatonVersion``).
    public var version: String
    /// User and system CPU time, in seconds.
    public var cpuSeconds: Double?
    public var residentBytes: Double?
    public var virtualBytes: Double?
    public var openDescriptors: Int?
    /// The soft `RLIMIT_NOFILE`.
    public var maximumDescriptors: Int?
    /// When the process started, in seconds since the Unix epoch.
    public var startTime: Double?

    public init(
        version: String, cpuSeconds: Double? = nil, residentBytes: Double? = nil, virtualBytes: Double? = nil,
        openDescriptors: Int? = nil, maximumDescriptors: Int? = nil, startTime: Double? = nil
    ) {
        self.version = version
        self.cpuSeconds = cpuSeconds
        self.residentBytes = residentBytes
        self.virtualBytes = virtualBytes
        self.openDescriptors = openDescriptors
        self.maximumDescriptors = maximumDescriptors
        self.startTime = startTime
    }

    /// The families, in the order written; one whose value could not be read is left out.
    var families: [MetricFamily] {
        func gauge(_ name: String, _ help: String, _ value: Double?, _ kind: MetricFamily.Kind = .gauge) -> MetricFamily {
            MetricFamily(name, kind, help: help, samples: value.map { [Sample([:], $0)] } ?? [])
        }
        return [
            MetricFamily("baton_build_info", .gauge, help: "Always 1; the version of Baton that runs", samples: [Sample(["version": version], 1)]),
            gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpuSeconds, .counter),
            gauge("process_resident_memory_bytes", "Resident memory size in bytes.", residentBytes),
            gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", virtualBytes),
            gauge("process_open_fds", "Number of open file descriptors.", openDescriptors.map(Double.init)),
            gauge("process_max_fds", "Maximum number of open file descriptors.", maximumDescriptors.map(Double.init)),
            gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", startTime),
        ]
    }
}
