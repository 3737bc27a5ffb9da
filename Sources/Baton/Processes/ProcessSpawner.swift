import CBatonShim
import Glibc

/// Starts child processes through the C shim's fork/exec, which places the given
/// sockets at 3, 4, … and lets nothing else of Baton's reach the child.
enum ProcessSpawner {
    struct Request {
        var command: [String]
        var environment: [String: String]
        var directory: String?
        /// Placed at fd 3, 4, ….
        var sockets: [Int32] = []
        /// A variable the child fills in with its own pid (`LISTEN_PID`, `BATON_PRELOAD_PID`).
        var processIDVariable: String?
        /// The signal the child gets when the thread that started it exits (0: none).
        /// Only the main thread lives as long as Baton, across an upgrade in place too,
        /// so only processes it starts should ask for one (``MainThread``).
        var parentDeathSignal: Int32 = 0
        var stdout: Int32 = -1
        var stderr: Int32 = -1
        /// The user, group and supplementary groups the child takes; nil keeps Baton's.
        var credentials: Credentials?
        var noNewPrivileges = false
        /// The child's umask; nil keeps Baton's.
        var umask: UInt32?
        /// Set as soft and hard limit before the credentials change.
        var limits: [ResourceLimit: UInt64] = [:]
    }

    /// Who a child runs as, resolved before the fork.
    struct Credentials: Equatable {
        var uid: uid_t
        var gid: gid_t
        var groups: [gid_t]
    }

    /// The pid of the started process. The process may still exit at once; that
    /// arrives like any other exit.
    static func spawn(_ request: Request) throws(SpawnError) -> pid_t {
        guard let program = request.command.first else { throw .commandNotFound(program: "") }
        guard let path = resolve(program, searchPath: request.environment["PATH"], directory: request.directory) else {
            throw .commandNotFound(program: program)
        }

        var environment = request.environment
        environment[WorkerContract.Systemd.processID] = nil
        environment[WorkerContract.Preload.processID] = nil
        var entries = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        if let variable = request.processIDVariable {
            entries.append(variable + "=" + String(repeating: " ", count: 24))
        }
        let argv = CStringArray(request.command)
        let envp = CStringArray(entries)
        defer {
            argv.free()
            envp.free()
        }

        let limits = request.limits.sorted { $0.key.rawValue < $1.key.rawValue }
        let limitResources = limits.map(\.key.resource)
        let limitValues = limits.map(\.value)
        let groups = request.credentials?.groups ?? []
        var pid: pid_t = 0
        var step: Int32 = 0
        let error: Int32 = path.withCString { cPath in
            request.sockets.withUnsafeBufferPointer { fds in
                groups.withUnsafeBufferPointer { groups in
                    limitResources.withUnsafeBufferPointer { resources in
                        limitValues.withUnsafeBufferPointer { values in
                            withOptionalCString(request.directory) { directory in
                                var spawn = baton_spawn_request(
                                    path: cPath, argv: argv.pointer, envp: envp.pointer,
                                    pid_variable_index: request.processIDVariable != nil ? Int32(entries.count - 1) : -1,
                                    fds: fds.baseAddress, fd_count: Int32(fds.count),
                                    stdout_fd: request.stdout, stderr_fd: request.stderr,
                                    directory: directory, new_session: 1,
                                    parent_death_signal: request.parentDeathSignal, parent_pid: getpid(),
                                    change_credentials: request.credentials != nil ? 1 : 0,
                                    uid: request.credentials?.uid ?? 0, gid: request.credentials?.gid ?? 0,
                                    groups: groups.baseAddress, group_count: Int32(groups.count),
                                    no_new_privileges: request.noNewPrivileges ? 1 : 0,
                                    umask: request.umask.map { Int32($0) } ?? -1,
                                    limit_resources: resources.baseAddress, limit_values: values.baseAddress,
                                    limit_count: Int32(resources.count))
                                return baton_spawn(&spawn, &pid, &step)
                            }
                        }
                    }
                }
            }
        }
        guard error == 0 else {
            throw .failed(program: program, step: stepName(step, request), errno: error)
        }
        return pid
    }

    /// Baton's own environment, without what belongs to Baton alone.
    static func inheritedEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        for text in environmentEntries() {
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
        }
        // What a supervisor of Baton's own told it, which must not reach a worker as if
        // Baton had said it.
        for key in [
            WorkerContract.Systemd.descriptorCount, WorkerContract.Systemd.processID,
            WorkerContract.Systemd.descriptorNames, WorkerContract.Systemd.notifySocket,
            WorkerContract.Systemd.watchdogInterval, WorkerContract.Systemd.watchdogProcessID,
            WorkerContract.Einhorn.masterProcessID, WorkerContract.Einhorn.descriptorCount,
            WorkerContract.Einhorn.childIndex, WorkerContract.Einhorn.commandSocketPath,
            WorkerContract.Einhorn.commandSocketDescriptor, WorkerContract.ServerStarter.port,
            WorkerContract.ServerStarter.generation, WorkerContract.Preload.descriptorCount,
            WorkerContract.Preload.processID, WorkerContract.Preload.drainSignal,
            UpgradeHandover.variable,
        ] {
            result[key] = nil
        }
        for key in result.keys where key.hasPrefix(WorkerContract.Einhorn.descriptorPrefix) {
            result[key] = nil
        }
        return result
    }

    /// This process's environment, as `NAME=value` entries.
    private static func environmentEntries() -> [String] {
        var entries: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            entries.append(String(cString: entry))
            cursor += 1
        }
        return entries
    }

    /// Executes `path` in place of this process, with this process's arguments and
    /// environment plus `extraEnvironment`; of its descriptors beyond stdin, stdout and
    /// stderr only `keeping` survive. Returns only on failure, with `keeping` private again.
    static func replaceProcess(with path: String, keeping: [Int32], extraEnvironment: [String: String]) -> SystemError {
        var entries = environmentEntries()
        entries.removeAll { entry in extraEnvironment.keys.contains { entry.hasPrefix($0 + "=") } }
        entries += extraEnvironment.map { "\($0.key)=\($0.value)" }
        let argv = CStringArray(CommandLine.arguments)
        let envp = CStringArray(entries)
        defer {
            argv.free()
            envp.free()
        }
        let error = baton_close_on_exec_from(3)
        guard error == 0 else { return SystemError("close_range", errno: error) }
        for fd in keeping {
            _ = fcntl(fd, F_SETFD, 0)
        }
        execve(path, argv.pointer, envp.pointer)
        let failure = SystemError.last("execve", subject: path)
        for fd in keeping {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        return failure
    }

    /// The program's path as `execve` needs it: as given when it has a slash, else
    /// found in `PATH`.
    private static func resolve(_ program: String, searchPath: String?, directory: String?) -> String? {
        if program.contains("/") {
            return program
        }
        for folder in (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(folder)/\(program)"
            if access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// The step of starting a process that failed, as an error names it.
    private static func stepName(_ step: Int32, _ request: ProcessSpawner.Request) -> String {
        let credentials = request.credentials
        return switch baton_spawn_step(rawValue: UInt32(step)) {
        case BATON_SPAWN_FORK: "fork"
        case BATON_SPAWN_CHDIR: "chdir(\(request.directory ?? ""))"
        case BATON_SPAWN_DESCRIPTORS: "placing descriptors (dup2)"
        case BATON_SPAWN_SETRLIMIT:
            "setrlimit(\(request.limits.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: ", ")))"
        case BATON_SPAWN_SETGROUPS: "setgroups(\(credentials?.groups.map(String.init).joined(separator: ",") ?? ""))"
        case BATON_SPAWN_SETGID: "setgid(\(credentials?.gid ?? 0))"
        case BATON_SPAWN_SETUID: "setuid(\(credentials?.uid ?? 0))"
        case BATON_SPAWN_NO_NEW_PRIVILEGES: "prctl(PR_SET_NO_NEW_PRIVS)"
        case BATON_SPAWN_EXECVE: "execve"
        default: "preparing the process"
        }
    }

    private static func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
        guard let string else { return body(nil) }
        return string.withCString(body)
    }
}

/// Why a process could not be started.
enum SpawnError: Error, CustomStringConvertible {
    /// The program has no slash and is not in `PATH` (or the command is empty).
    case commandNotFound(program: String)
    /// `fork`, or a step in the child (`chdir`, `dup2`, `setuid`, `execve`, …), failed
    /// with `errno`.
    case failed(program: String, step: String, errno: Int32)
    /// `protocol = "preload"`, and the library cannot be read.
    case preloadLibraryUnreadable(path: String, errno: Int32)

    var description: String {
        switch self {
        case .preloadLibraryUnreadable(let path, let errno):
            "the preload library \(path) cannot be read (\(String(cString: strerror(errno)))); set preload_library (--preload-library)"
        case .commandNotFound(let program) where program.isEmpty: "no command"
        case .commandNotFound(let program): "\(program): command not found"
        case .failed(let program, let step, let errno) where step == "execve":
            "\(program): \(String(cString: strerror(errno)))"
        case .failed(let program, let step, let errno): "\(program): \(step) failed: \(String(cString: strerror(errno)))"
        }
    }
}

/// A NULL-terminated array of C strings that outlives a fork.
private struct CStringArray {
    let pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointer = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() {
            pointer[index] = strdup(string)
        }
        pointer[strings.count] = nil
    }

    func free() {
        for index in 0..<count {
            Glibc.free(pointer[index])
        }
        pointer.deallocate()
    }
}
