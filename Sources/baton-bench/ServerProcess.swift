import CBatonShim
import Foundation

/// A server under test, started as a service manager starts one: in a session of its own.
///
/// Why not Foundation's `Process`: its child stays in the benchmark's session, and on a
/// kernel with autogroup scheduling (`kernel.sched_autogroup_enabled`, on by default in
/// Debian) a session is a CPU scheduling group. A supervisor in the load generator's
/// session then competes for its share with the 32 client threads, and a reload under
/// load took 100 ms instead of 20 (Docs/benchmarks.md, "The benchmark ran Baton in its
/// clients' scheduling group"). systemd and supervisord start each service in a session
/// of its own, and clients run on other machines, so each server gets one here. Started
/// through Baton's own spawner (`baton_spawn`): Foundation makes its child a process
/// group leader, which can no longer call `setsid`.
final class ServerProcess {
    let processIdentifier: pid_t
    private var status: Int32?

    /// Starts `command` (an absolute path first) with `environment` (the benchmark's
    /// own when nil) and its stdout and stderr on the given descriptors (-1: /dev/null);
    /// no descriptor of the benchmark's but 0, 1 and 2 reaches it.
    init(_ command: [String], environment: [String: String]? = nil, stdout: Int32 = -1, stderr: Int32 = -1) throws {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw BenchError("open(/dev/null): errno \(errno)") }
        defer { close(null) }
        let entries = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        var step: Int32 = 0
        let error = withCStrings(command) { argv in
            withCStrings(entries) { envp in
                var request = baton_spawn_request()
                request.path = UnsafePointer(argv[0])
                request.argv = UnsafePointer(argv)
                request.envp = UnsafePointer(envp)
                request.pid_variable_index = -1
                request.stdout_fd = stdout >= 0 ? stdout : null
                request.stderr_fd = stderr >= 0 ? stderr : null
                request.new_session = 1
                request.umask = -1
                return baton_spawn(&request, &pid, &step)
            }
        }
        guard error == 0 else {
            throw BenchError("cannot start \(command[0]): \(String(cString: strerror(error))) (step \(step))")
        }
        processIdentifier = pid
    }

    var isRunning: Bool {
        reap(blocking: false)
        return status == nil
    }

    /// Waits for the process to exit and reaps it.
    func waitUntilExit() {
        reap(blocking: true)
    }

    /// The exit status, or 128 plus the signal that ended it (-1: unknown); nil while it
    /// runs.
    var terminationStatus: Int32? {
        reap(blocking: false)
        return status
    }

    private func reap(blocking: Bool) {
        guard status == nil else { return }
        var raw: Int32 = 0
        var result: pid_t
        repeat {
            result = waitpid(processIdentifier, &raw, blocking ? 0 : WNOHANG)
        } while result < 0 && errno == EINTR
        if result < 0 && errno == ECHILD {
            // Reaped by someone else (never seen): gone, its status unknown.
            status = -1
            return
        }
        guard result == processIdentifier else { return }
        let signal = raw & 0x7f
        status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }

    deinit {
        if isRunning {
            kill(processIdentifier, SIGKILL)
            waitUntilExit()
        }
    }
}

/// `strings` as a NULL-terminated array of C strings, for the duration of `body`.
private func withCStrings<Result>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Result) -> Result {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    var array = pointers
    return array.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
