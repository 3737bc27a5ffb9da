import BatonWorker
import BatonWorkerHummingbird
import Glibc
import HTTPTypes
import Hummingbird
import Logging

// A Hummingbird 2 application as a Baton worker: it serves on the `http` listener Baton
// (or systemd) passes, or binds --listen (default 127.0.0.1:8080) when run on its own;
// says READY=1 once it accepts; drains on SIGTERM or SIGINT: stops accepting, finishes
// requests in flight, answers the next request on a keep-alive connection with
// `Connection: close`, closes connections idle for a second (--drain-idle-ms), and
// exits 0.
//
//   GET /            200 "pid=… generation=… slot=…"
//   GET /sleep?ms=N  the same after N ms
var logger = Logger(label: "baton-hummingbird-example")
logger.logLevel = .notice

let router = Router()
router.add(middleware: WorkerHeaders())
router.get("/") { _, _ in WorkerHeaders<BasicRequestContext>.identity }
router.get("/sleep") { request, _ in
    let milliseconds = Int(request.uri.queryParameters["ms"] ?? "0") ?? 0
    try await Task.sleep(for: .milliseconds(max(0, milliseconds)))
    return WorkerHeaders<BasicRequestContext>.identity
}

do {
    let arguments = CommandLine.arguments
    func option(_ name: String) -> String? {
        arguments.firstIndex(of: name).flatMap { arguments.dropFirst($0 + 1).first }
    }
    let address = try ListenAddress(parsing: option("--listen") ?? "127.0.0.1:8080")
    let listener = try BatonWorker.listener("http", default: address)
    var server = ListenerHTTPServer(listener: listener, router: router, logger: logger)
    if let milliseconds = option("--drain-idle-ms").flatMap(Int64.init) {
        server.drainIdleTimeout = .milliseconds(milliseconds)
    }
    try await BatonWorker.run(services: [server], logger: logger)
} catch {
    let line = Array("baton-hummingbird-example[\(getpid())]: \(error)\n".utf8)
    _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(1)
}

/// Who answered, in headers Baton's tests and load generator read.
struct WorkerHeaders<Context: RequestContext>: RouterMiddleware {
    static var identity: String {
        "pid=\(getpid()) generation=\(BatonWorker.generation ?? 0) slot=\(BatonWorker.slot ?? 0)\n"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[HTTPField.Name("X-Pid")!] = "\(getpid())"
        response.headers[HTTPField.Name("X-Generation")!] = "\(BatonWorker.generation ?? 0)"
        response.headers[HTTPField.Name("X-Slot")!] = "\(BatonWorker.slot ?? 0)"
        return response
    }
}
