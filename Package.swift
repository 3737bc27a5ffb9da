// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Baton",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "baton", targets: ["baton"]),
        .executable(name: "batonctl", targets: ["batonctl"]),
        .executable(name: "baton-demo", targets: ["baton-demo"]),
        .executable(name: "baton-bench", targets: ["baton-bench"]),
        .library(name: "Baton", targets: ["Baton"]),
        // LD_PRELOAD for servers that bind their own port (protocol = "preload").
        .library(name: "baton-preload", type: .dynamic, targets: ["CBatonPreload"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // The system calls Swift cannot make: fork/exec with descriptor placement,
        // credentials on datagrams, accept-queue depth, the reuseport migration program.
        .target(
            name: "CBatonShim",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // Preloaded into a server that binds its own port: its bind() to a listener's
        // address gets the socket Baton holds (Docs/wrapping.md).
        .target(
            name: "CBatonPreload",
            cSettings: [.define("_GNU_SOURCE")],
            // No Swift start-up object: it would make a pure C library call into the Swift
            // runtime when a server loads it. (swiftc still lists libswiftCore as needed
            // unless built with --static-swift-stdlib; nothing of it is used.)
            linkerSettings: [.unsafeFlags(["-nostartfiles"])]
        ),
        // libsystemd, for the sd_notify and sd_listen_fds protocols.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // The supervisor: configuration, sockets, processes, the reload state machine,
        // the control protocol.
        .target(
            name: "Baton",
            dependencies: [
                "CBatonShim",
                "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .executableTarget(
            name: "baton",
            dependencies: [
                "Baton",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "batonctl",
            dependencies: [
                "Baton",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "baton-demo",
            dependencies: [
                "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // HTTP load with every failure classified; used by baton-bench and the tests.
        .target(
            name: "BatonLoad",
            dependencies: [
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "baton-bench",
            dependencies: [
                "Baton",
                "BatonLoad",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "BatonTests",
            dependencies: ["Baton"]
        ),
        .testTarget(
            name: "BatonIntegrationTests",
            dependencies: ["Baton", "BatonLoad", "baton", "batonctl", "baton-demo"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
