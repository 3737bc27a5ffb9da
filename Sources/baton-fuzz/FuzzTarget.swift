import Baton
import BatonCore
import BatonWorker
import NIOCore
import NIOEmbedded

/// The parsers of input from outside Baton, each fed arbitrary bytes. A target returns
/// normally for any input; anything else (a trap, an overflow, a broken round trip) is
/// a bug in the parser.
enum FuzzTarget: String, CaseIterable {
    /// The TOML configuration file.
    case configuration
    /// One request line of the control protocol.
    case control
    /// One sd_notify datagram from a worker.
    case notify
    /// The inherited-socket variables a worker reads (`LISTEN_*`, `SERVER_STARTER_PORT`),
    /// one `NAME=value` a line.
    case environment
    /// The bytes a `/metrics` client sends, on one connection: the endpoint's pipeline
    /// answers each whole request once, and never more answers than requests.
    case metrics

    /// Feeds `bytes` to a connection of the `/metrics` endpoint, then lets every deadline
    /// pass: it answers at most one response per request (a request takes a few bytes
    /// at least), plus one for a malformed request.
    static func metrics(_ bytes: UnsafeRawBufferPointer) {
        let channel = EmbeddedChannel()
        do {
            try MetricsEndpoint.addHandlers(to: channel.pipeline.syncOperations) { "baton_up 1\n" }
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9102)).wait()
        } catch {
            preconditionFailure("the endpoint's pipeline cannot be set up: \(error)")
        }
        _ = try? channel.writeInbound(channel.allocator.buffer(bytes: bytes))
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        var responses = 0
        while let part = try? channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = part else { continue }
            if buffer.readableBytesView.starts(with: "HTTP/1.".utf8) { responses += 1 }
        }
        // The bound is about growth, not the parser's leniency: it takes a bare line feed as
        // the end of a line, so "GET /x\n" is a request; an error answer comes on top.
        precondition(responses <= bytes.count / 4 + 2, "\(responses) responses to \(bytes.count) bytes")
        _ = try? channel.finish()
    }

    /// The process id the `environment` target's worker has (seeds set `LISTEN_PID` to it).
    static let environmentProcessID: Int32 = 4242

    func run(_ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes, as: UTF8.self)
        switch self {
        case .configuration:
            _ = try? ConfigurationFile.parse(text, source: "fuzz.toml", defaultControlSocket: "/run/baton-fuzz.sock")
        case .control:
            guard case .success(let request) = ControlRequest.decode(text) else { return }
            let line = request.encodedLine()
            precondition(
                line.last == "\n" && line.dropLast().allSatisfy { $0 != "\n" },
                "a request encodes as one line: \(line.debugDescription)")
            precondition(
                ControlRequest.decode(String(line.dropLast())) == .success(request),
                "a request decodes as it was encoded: \(line.debugDescription)")
        case .notify:
            let message = NotifyMessage(text)
            precondition(!message.ready || text.contains("READY=1"), "ready only when the message says READY=1: \(text.debugDescription)")
        case .metrics:
            Self.metrics(bytes)
        case .environment:
            var environment: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                environment[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            guard
                let listeners = try? InheritedListeners.parse(
                    environment: environment,
                    processID: Self.environmentProcessID)
            else { return }
            precondition(!listeners.entries.isEmpty, "listeners are nil rather than none")
            for entry in listeners.entries {
                precondition((try? listeners.descriptor(named: entry.name)) != nil, "\(entry.name) is not found by its name")
            }
        }
    }
}

#if FUZZING
    import Glibc

    /// The target `BATON_FUZZ_TARGET` names.
    let selectedTarget: FuzzTarget = {
        let name = getenv("BATON_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            let message = "baton-fuzz: set BATON_FUZZ_TARGET to one of: \(known)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
        return target
    }()

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        selectedTarget.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }

    /// libFuzzer's driver, which its own `main` calls.
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// The executable's entry point: SwiftPM links an executable target's `main` to
    /// `<target>_main`, which libFuzzer's `main` is not, so this one starts libFuzzer.
    @_cdecl("baton_fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var argc = argc
        var argv = argv
        return runFuzzerDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
    }
#else
    import Foundation

    /// Built without the fuzzer: `baton-fuzz TARGET FILE…` runs the target on each file,
    /// to replay a crash or a corpus under the debugger.
    @main
    struct BatonFuzz {
        static func main() throws {
            let arguments = CommandLine.arguments.dropFirst()
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
                let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
                FileHandle.standardError.write(Data("usage: baton-fuzz \(known) FILE...\n".utf8))
                exit(2)
            }
            for path in arguments.dropFirst() {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                data.withUnsafeBytes { target.run($0) }
                print("\(path): ok")
            }
        }
    }
#endif
