import BatonCore
import BatonWorker
import Glibc
import NIOCore
import NIOPosix

// baton-demo: the server Baton ships to show and test zero-downtime reloads.
let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
if let code = options.exitAtStart {
    exit(code)
}
// Blocked in every thread (they inherit the mask), and taken with sigwait, so that no
// drain signal is lost however early it comes.
let drainSignals = [SIGTERM, SIGINT, SIGQUIT]
DemoServer.blockSignals(drainSignals)
let identity = Identity()
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server: DemoServer
do {
    server = try DemoServer.start(options: options, identity: identity, on: group.next())
} catch {
    log("cannot serve: \(error)")
    exit(1)
}
log("generation=\(identity.generation) slot=\(identity.slot) serving on \(server.address)")

if !options.neverReady {
    server.eventLoop.scheduleTask(in: .milliseconds(Int64(options.readyDelayMilliseconds))) {
        BatonWorker.notifier.ready(status: "serving on \(server.address)")
    }
}
server.drainOnSignals(drainSignals)

/// Who this worker is, from Baton's environment.
struct Identity: Sendable {
    let pid = getpid()
    let generation = Identity.variable(WorkerContract.generation) ?? "0"
    let slot = Identity.variable(WorkerContract.slot) ?? "0"
    /// `APP_VERSION`, answered as `X-Version`: which release a client reached, in a rollout.
    let version = Identity.variable("APP_VERSION")

    static func variable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

func log(_ message: String) {
    let line = Array("baton-demo[\(getpid())] \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
