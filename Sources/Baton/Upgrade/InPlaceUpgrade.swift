import Glibc

/// `batonctl upgrade`: whether Baton may replace its own binary now, what it hands to
/// the new one, and the `execve` itself.
enum InPlaceUpgrade {
    /// Descriptors beyond 0–2 that Baton's parent left open on purpose (not
    /// close-on-exec), such as a pipe it watches to see Baton end: an upgrade keeps
    /// them, as the process they were given to lives on. Read once, before anything
    /// else opens a descriptor.
    nonisolated(unsafe) private(set) static var descriptorsAtStart: [Int32] = []

    static func recordDescriptorsAtStart() {
        descriptorsAtStart = inheritableDescriptors()
    }

    /// The open descriptors above 2 that are not close-on-exec, other than the sockets
    /// systemd passed through `LISTEN_FDS` (those are adopted, not kept as they are).
    private static func inheritableDescriptors() -> [Int32] {
        var systemdRange: Range<Int32> = 0..<0
        if let pid = getenv(WorkerContract.Systemd.processID).flatMap({ pid_t(String(cString: $0)) }), pid == getpid(),
            let count = getenv(WorkerContract.Systemd.descriptorCount).flatMap({ Int32(String(cString: $0)) })
        {
            systemdRange = WorkerContract.firstListenerDescriptor..<(WorkerContract.firstListenerDescriptor + count)
        }
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = entry.pointee.name
            guard let fd = Int32(name), fd > 2, fd != own, !systemdRange.contains(fd) else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { result.append(fd) }
        }
        return result
    }

    /// Why Baton cannot replace itself right now, or nil: only a settled service, one
    /// generation with every worker ready, hands over cleanly.
    static func refusal(_ status: StatusProjection, executable: String) -> String? {
        let machine = status.machine
        guard machine.phase == .running, machine.generations.count == 1, let serving = machine.serving else {
            let serving = machine.serving?.number ?? 0
            let replaced = machine.generations.filter { $0.number < serving }.map { "generation \($0.number)" }
            let reloading = machine.phase != .running || machine.generations.contains { $0.number > serving }
            let when =
                reloading || replaced.isEmpty
                ? "one generation serves alone"
                : "\(replaced.joined(separator: " and ")) has exited (reload, scale and promote with --wait-drained return then)"
            return "Baton is \(status.phase) with \(machine.generations.count) generation(s); upgrade once \(when)"
        }
        if let worker = serving.workers.values.sorted(by: { $0.id < $1.id }).first(where: { $0.state != .ready }) {
            return "worker \(worker.id) is \(worker.state.rawValue); upgrade once every worker is ready"
        }
        if let slot = serving.restarting.min() {
            return "slot \(slot) is restarting; upgrade once every worker is ready"
        }
        if let stalled = serving.retired.keys.min() {
            return "stalled worker \(stalled) is draining; upgrade once it has exited"
        }
        if serving.configuration.workers.output == .prefix {
            return "workers' output goes through Baton (output = \"prefix\"), which cannot be handed over yet"
        }
        guard access(executable, X_OK) == 0 else {
            return "\(executable) is not an executable file: \(SystemError.last("access"))"
        }
        return nil
    }

    /// Executes `executable` in place of this process, keeping the handed-over sockets
    /// and the parent's descriptors open. Call it from the main thread: an `execve`
    /// from another thread looks, to a parent watching through a pidfd, like the
    /// process exiting. Returns only on failure.
    static func execute(_ executable: String, _ handover: UpgradeHandover) -> SystemError {
        ProcessSpawner.replaceProcess(
            with: executable, keeping: handover.sockets.map(\.fd) + handover.steeringDescriptors + handover.descriptorsFromParent,
            extraEnvironment: [UpgradeHandover.variable: handover.encoded()])
    }
}
