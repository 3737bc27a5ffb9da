import BatonCore

/// The listening sockets a process was started with, by name.
///
/// Read from systemd's socket-activation protocol (`LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`; Baton's default, and systemd's own) or from Server::Starter's
/// (`SERVER_STARTER_PORT=host:port=fd;…`). ``parse(environment:processID:)`` is pure, so
/// the rules are testable without a process; ``BatonWorker/inheritedListeners()`` applies
/// it to the real environment.
public struct InheritedListeners: Sendable, Equatable {
    /// Where the descriptors came from.
    public enum Source: String, Sendable, Equatable {
        /// `LISTEN_FDS` with `LISTEN_FDNAMES`.
        case systemdNamed = "LISTEN_FDS"
        /// `LISTEN_FDS` without `LISTEN_FDNAMES`: every socket is called `unknown`.
        case systemdUnnamed = "LISTEN_FDS (no LISTEN_FDNAMES)"
        /// `SERVER_STARTER_PORT`: sockets are named by their address (`127.0.0.1:8080`).
        case serverStarter = "SERVER_STARTER_PORT"
    }

    public struct Entry: Sendable, Equatable {
        public let name: String
        public let descriptor: Int32

        public init(name: String, descriptor: Int32) {
            self.name = name
            self.descriptor = descriptor
        }
    }

    public let source: Source
    /// In descriptor order.
    public let entries: [Entry]

    public init(source: Source, entries: [Entry]) {
        self.source = source
        self.entries = entries
    }

    /// The first descriptor of systemd's protocol.
    public static let firstDescriptor = WorkerContract.firstListenerDescriptor

    /// The variables the protocols use; unset once read so that children don't misread them.
    public static let variables = [
        WorkerContract.Systemd.descriptorCount, WorkerContract.Systemd.processID,
        WorkerContract.Systemd.descriptorNames, WorkerContract.ServerStarter.port,
    ]

    /// The listeners `environment` passes to process `processID`, or nil when it passes none.
    ///
    /// - Throws: ``BatonWorkerError`` when the variables are there but wrong: `LISTEN_PID`
    ///   naming another process or missing, a count that is not a number, a
    ///   `LISTEN_FDNAMES` with another number of names than `LISTEN_FDS`, a malformed
    ///   `SERVER_STARTER_PORT`.
    public static func parse(environment: [String: String], processID: Int32) throws(BatonWorkerError) -> InheritedListeners? {
        if let count = environment[WorkerContract.Systemd.descriptorCount] {
            return try parseSystemd(count: count, environment: environment, processID: processID)
        }
        if let ports = environment[WorkerContract.ServerStarter.port] {
            return try parseServerStarter(ports)
        }
        return nil
    }

    private static func parseSystemd(count text: String, environment: [String: String], processID: Int32) throws(BatonWorkerError) -> InheritedListeners? {
        guard let count = Int32(text), count >= 0, count <= 65536 else {
            throw BatonWorkerError(.malformedVariable, "LISTEN_FDS is '\(text)', not a number of descriptors")
        }
        guard let pidText = environment[WorkerContract.Systemd.processID] else {
            throw BatonWorkerError(.malformedVariable, "LISTEN_FDS is set but LISTEN_PID is not")
        }
        guard let pid = Int32(pidText), pid > 0 else {
            throw BatonWorkerError(.malformedVariable, "LISTEN_PID is '\(pidText)', not a process id")
        }
        guard pid == processID else {
            throw BatonWorkerError(
                .wrongProcess,
                "LISTEN_PID is \(pid) but this process is \(processID): the descriptors were meant for another process"
            )
        }
        guard count > 0 else { return nil }
        let descriptors = (0..<count).map { firstDescriptor + $0 }
        guard let namesText = environment[WorkerContract.Systemd.descriptorNames] else {
            return InheritedListeners(
                source: .systemdUnnamed,
                entries: descriptors.map { Entry(name: "unknown", descriptor: $0) }
            )
        }
        let names = namesText.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard names.count == descriptors.count else {
            throw BatonWorkerError(
                .countMismatch,
                "LISTEN_FDNAMES names \(names.count) socket\(names.count == 1 ? "" : "s") but LISTEN_FDS is \(count)"
            )
        }
        return InheritedListeners(
            source: .systemdNamed,
            entries: zip(names, descriptors).map { Entry(name: $0, descriptor: $1) }
        )
    }

    private static func parseServerStarter(_ text: String) throws(BatonWorkerError) -> InheritedListeners? {
        var entries: [Entry] = []
        for item in text.split(separator: ";") {
            guard let equals = item.lastIndex(of: "="), let fd = Int32(item[item.index(after: equals)...]), fd >= 0,
                equals != item.startIndex
            else {
                throw BatonWorkerError(
                    .malformedVariable,
                    "SERVER_STARTER_PORT entry '\(item)' is not ADDRESS=DESCRIPTOR"
                )
            }
            entries.append(Entry(name: String(item[..<equals]), descriptor: fd))
        }
        return entries.isEmpty ? nil : InheritedListeners(source: .serverStarter, entries: entries)
    }

    /// The names, as an error message lists them.
    public var names: [String] { entries.map(\.name) }

    /// The descriptor of the listener called `name`.
    ///
    /// When the protocol carries no names (`LISTEN_FDS` without `LISTEN_FDNAMES`, or
    /// Server::Starter, which names by address) and there is exactly one socket, that
    /// socket answers to any name.
    public func descriptor(named name: String) throws(BatonWorkerError) -> Int32 {
        if let entry = entries.first(where: { $0.name == name }) {
            return entry.descriptor
        }
        if source != .systemdNamed, entries.count == 1 {
            return entries[0].descriptor
        }
        throw BatonWorkerError(
            .noSuchListener,
            "no inherited listener named '\(name)' (have: \(names.joined(separator: ", ")); from \(source.rawValue))"
        )
    }
}
