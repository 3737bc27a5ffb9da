// swift-tools-version:6.1
import PackageDescription

// How the shipped executables are linked: lld, relative relocations packed (DT_RELR,
// glibc 2.36+), no symbol exported. The dynamic loader then reads a few KB of
// relocations at start instead of megabytes of RELA entries (which then stay resident),
// writes far fewer pages, and binds no symbol of the program by name: less memory for
// Baton, and less CPU at every baton-demo start (Docs/metrics.md, "Memory";
// Docs/benchmarks.md, "What a reload costs, and the close-mode comparison again").
let compactExecutable: [LinkerSetting] = [
    .unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"])
]

let package = Package(
    name: "Baton",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "baton", targets: ["baton"]),
        .executable(name: "batonctl", targets: ["batonctl"]),
        .executable(name: "baton-demo", targets: ["baton-demo"]),
        .executable(name: "baton-bench", targets: ["baton-bench"]),
        .executable(name: "baton-hummingbird-example", targets: ["baton-hummingbird-example"]),
        .library(name: "BatonCore", targets: ["BatonCore"]),
        .library(name: "Baton", targets: ["Baton"]),
        // LD_PRELOAD for servers that bind their own port (protocol = "preload").
        .library(name: "baton-preload", type: .dynamic, targets: ["CBatonPreload"]),
        .library(name: "BatonWorker", targets: ["BatonWorker"]),
        .library(name: "BatonWorkerHummingbird", targets: ["BatonWorkerHummingbird"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Only the example uses Hummingbird; its configuration-file support is not needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // The system calls Swift cannot make: fork/exec with descriptor placement,
        // credentials on datagrams, accept-queue depth, the steering program's maps and
        // loading. The program's source (bpf/) is compiled for the BPF target by
        // bpf/generate, not by SwiftPM, which compiles a C target for one triple only.
        .target(
            name: "CBatonShim",
            exclude: ["bpf"],
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // What only the integration tests need from C (entering a network namespace).
        .target(
            name: "CBatonTestSupport",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // Preloaded into a server that binds its own port: its bind() to a listener's
        // address gets the socket Baton holds (Docs/wrapping.md).
        .target(
            name: "CBatonPreload",
            cSettings: [.define("_GNU_SOURCE")],
            // A plain C library, needing libc alone: SwiftPM links every product with swiftc,
            // which adds the Swift runtime (libswiftCore with a RUNPATH into the toolchain, or
            // with --static-swift-stdlib libstdc++ and libm) and its start-up object. Embedded
            // mode makes swiftc link none of them, and -no-static-stdlib keeps it so under
            // --static-swift-stdlib; a server then needs no Swift to load the library.
            linkerSettings: [.unsafeFlags(["-enable-experimental-feature", "Embedded", "-no-static-stdlib"])]
        ),
        // libsystemd, for the sd_notify and sd_listen_fds protocols.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // What clients and workers share with the supervisor: the control protocol and its
        // client, the typed status, the worker contract (variable names, fd 3), listener
        // addresses and the socket calls behind them, system errors. Glibc and Foundation's
        // JSON only, so that batonctl links neither SwiftNIO nor TOMLKit nor libsystemd
        // (NIOCore's role beside NIOPosix).
        .target(name: "BatonCore"),
        // The supervisor: configuration, sockets, processes, the reload state machine,
        // the control protocol.
        .target(
            name: "Baton",
            dependencies: [
                "BatonCore",
                "CBatonShim",
                "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .executableTarget(
            name: "baton",
            dependencies: [
                "Baton",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            linkerSettings: compactExecutable
        ),
        .executableTarget(
            name: "batonctl",
            dependencies: [
                "BatonCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            linkerSettings: compactExecutable
        ),
        // The library for servers run by Baton (or by systemd socket activation, or on
        // their own): inherited listeners by name, readiness, drain as graceful shutdown.
        // Independent of the supervisor: it shares only BatonCore with it.
        .target(
            name: "BatonWorker",
            dependencies: [
                "BatonCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "baton-demo",
            dependencies: [
                "BatonCore",
                "BatonWorker",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            linkerSettings: compactExecutable
        ),
        // Hummingbird 2 served on a BatonWorker listener (Hummingbird's own server binds
        // only addresses), with a drain that loses no keep-alive request.
        .target(
            name: "BatonWorkerHummingbird",
            dependencies: [
                "BatonWorker",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A Hummingbird 2 application as a Baton worker.
        .executableTarget(
            name: "baton-hummingbird-example",
            dependencies: [
                "BatonWorker",
                "BatonWorkerHummingbird",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // HTTP load with every failure classified; used by baton-bench and the tests.
        .target(
            name: "BatonLoad",
            dependencies: [
                .product(name: "Histogram", package: "hdrhistogram-swift")
            ]
        ),
        .executableTarget(
            name: "baton-bench",
            dependencies: [
                "BatonCore",
                "BatonLoad",
                // Servers under test start in a session of their own (ServerProcess.swift).
                "CBatonShim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // libFuzzer targets for the parsers of outside input (Docs/security.md, "Fuzzing"). Built
        // with -sanitize=fuzzer -DFUZZING by Tests/Fuzz/run; built plainly it replays files.
        .executableTarget(
            name: "baton-fuzz",
            dependencies: [
                "Baton", "BatonCore", "BatonWorker",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "BatonCoreTests",
            dependencies: ["BatonCore"]
        ),
        .testTarget(
            name: "BatonTests",
            dependencies: ["Baton", "BatonLoad", "CBatonShim", "CBatonTestSupport"]
        ),
        .testTarget(
            name: "BatonWorkerTests",
            dependencies: [
                "BatonWorker",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "BatonIntegrationTests",
            dependencies: ["BatonCore", "BatonLoad", "CBatonTestSupport", "baton", "batonctl", "baton-demo", "baton-hummingbird-example"],
            // Go and Node.js servers the tests build or run from the source tree.
            exclude: ["Servers"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
