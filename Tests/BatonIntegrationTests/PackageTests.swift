import BatonCore
import BatonLoad
import Foundation
import Testing

/// The Debian package that `.ci/package-deb` builds (CI builds it before the tests), installed
/// with `dpkg -i` in a mount namespace of its own, where /usr, /etc and /var are overlays
/// that vanish with it and the Swift toolchain's directory is empty: it runs the demo, a
/// reload under load loses nothing, the preload recipe works, and `dpkg -r` removes it.
@Suite(.serialized) struct PackageTests {
    /// The newest `.build/deb/baton_*.deb` of this checkout, or nil.
    static let package: String? = {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/deb").standardized.path
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter {
            $0.hasPrefix("baton_") && $0.hasSuffix(".deb")
        }
        return names.sorted().last.map { "\(folder)/\($0)" }
    }()

    /// A mount namespace, held by a sleeping process, in which /usr, /etc and /var are
    /// overlays on tmpfs (what dpkg writes stays in it), /run is empty and the toolchain
    /// is hidden.
    final class Host {
        let holder = Process()

        init(toolchain: String, in scratch: ScratchDirectory) throws {
            let ready = "\(scratch.path)/host-ready"
            try scratch.write(
                "host.sh",
                """
                set -e
                mount -t tmpfs tmpfs '\(scratch.path)/host'
                for folder in usr etc var; do
                    mkdir -p '\(scratch.path)'/host/$folder-upper '\(scratch.path)'/host/$folder-work
                    mount -t overlay overlay -o lowerdir=/$folder,upperdir='\(scratch.path)'/host/$folder-upper,workdir='\(scratch.path)'/host/$folder-work /$folder
                done
                mount -t tmpfs -o ro,mode=755 tmpfs '\(toolchain)'
                # The host's systemd, if any, must not hear of the package (its postinst).
                mount -t tmpfs tmpfs /run
                touch '\(ready)'
                exec sleep 3600
                """)
            try FileManager.default.createDirectory(atPath: "\(scratch.path)/host", withIntermediateDirectories: true)
            holder.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            holder.arguments = ["--mount", "--propagation", "private", "--", "/bin/bash", "\(scratch.path)/host.sh"]
            holder.standardOutput = FileHandle.nullDevice
            holder.standardError = FileHandle.nullDevice
            try holder.run()
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: ready) && holder.isRunning && Date() < deadline {
                usleep(20_000)
            }
            guard FileManager.default.fileExists(atPath: ready) else {
                throw TestFailure("the namespace was not set up (unshare exited \(holder.isRunning ? "no" : "\(holder.terminationStatus)"))")
            }
        }

        /// What runs `command` in the namespace.
        var enter: [String] {
            ["/usr/bin/nsenter", "-t", "\(holder.processIdentifier)", "-m", "--"]
        }

        @discardableResult
        func run(_ command: [String]) throws -> (status: Int32, output: String) {
            try BatonIntegrationTests.run(enter[0], Array(enter.dropFirst()) + command)
        }

        deinit {
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
        }
    }

    @Test func theInstalledPackageRunsWithoutSwiftAndIsRemovedCleanly() throws {
        guard let package = Self.package else {
            print("skipped: no package was built (bash .ci/package-deb builds .build/deb/baton_*.deb; .ci/run does)")
            return
        }
        if let reason = SwiftToolchain.cannotHide {
            print("skipped: \(reason)")
            return
        }
        let toolchain = try #require(SwiftToolchain.directory)
        let scratch = ScratchDirectory()
        let host = try Host(toolchain: toolchain, in: scratch)
        #expect(try host.run(["ls", "-A", toolchain]).output.isEmpty, "the toolchain must be hidden")
        let install = try host.run(["dpkg", "-i", package])
        #expect(install.status == 0, "\(install.output)")
        let files = try host.run(["sh", "-c", "dpkg -L baton | while read -r f; do if [ -f \"$f\" ]; then echo \"$f\"; fi; done"]).output
            .split(separator: "\n").map(String.init)

        // What the package holds, and that none of it needs Swift.
        for file in [
            "/usr/bin/baton", "/usr/bin/batonctl", "/usr/bin/baton-demo", "/usr/lib/baton/libbaton-preload.so",
            "/lib/systemd/system/baton-demo.socket", "/lib/systemd/system/baton-demo.service",
            "/lib/systemd/system/baton@.service", "/usr/share/doc/baton/examples/supervisord-baton.conf",
            "/usr/share/man/man1/baton.1.gz", "/usr/share/man/man1/batonctl.1.gz",
            "/usr/share/bash-completion/completions/baton", "/usr/share/bash-completion/completions/batonctl",
            "/usr/share/zsh/vendor-completions/_baton", "/usr/share/fish/vendor_completions.d/batonctl.fish",
        ] {
            #expect(files.contains(file), "\(file) in \(files)")
        }
        for binary in ["/usr/bin/baton", "/usr/bin/batonctl", "/usr/bin/baton-demo", "/usr/lib/baton/libbaton-preload.so"] {
            let libraries = try host.run(["ldd", binary]).output
            #expect(!libraries.contains("swift") && !libraries.contains("not found"), "\(binary): \(libraries)")
        }
        // batonctl and baton-demo are linked whole: no program interpreter, nothing to load.
        for binary in ["/usr/bin/batonctl", "/usr/bin/baton-demo"] {
            let headers = try host.run(["readelf", "--program-headers", "--wide", binary])
            #expect(headers.status == 0 && !headers.output.contains("INTERP"), "\(binary): \(headers.output)")
        }
        #expect(try host.run(["/usr/bin/baton", "--version"]).output == "\(BatonVersion.current)\n")
        // mdoc: an option is a flag macro.
        #expect(try host.run(["sh", "-c", "zcat /usr/share/man/man1/baton.1.gz"]).output.contains(".It Fl -drain-timeout"))
        let service = try host.run(["cat", "/lib/systemd/system/baton-demo.service"]).output
        #expect(service.contains("ExecStart=/usr/bin/baton ") && !service.contains("/usr/local/bin"), "\(service)")
        #expect(try host.run(["cat", "/lib/systemd/system/baton-demo.socket"]).output.contains("ReusePort=yes"))

        try demoReloadsUnderLoad(host, in: scratch)
        try preloadRecipe(host, in: scratch)

        let remove = try host.run(["dpkg", "-r", "baton"])
        #expect(remove.status == 0, "\(remove.output)")
        let left = try host.run(["sh", "-c", "for f in \"$@\"; do if [ -e \"$f\" ]; then echo \"$f\"; fi; done", "-"] + files).output
        #expect(left.isEmpty, "dpkg -r must remove every file: \(left)")
        #expect(try host.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", "baton"]).output != "installed")
    }

    /// The demo under the packaged baton, 10 reloads under load: no request fails.
    func demoReloadsUnderLoad(_ host: Host, in scratch: ScratchDirectory) throws {
        let port = freePort()
        let baton = try BatonUnderTest(
            ["--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--", "/usr/bin/baton-demo"], in: scratch,
            launcher: host.enter, executable: "/usr/bin/baton")
        defer { baton.stop() }
        try baton.waitUntilServing()
        var configuration = LoadConfiguration(target: .tcp(host: "127.0.0.1", port: port))
        configuration.clients = 8
        configuration.requestTimeout = .seconds(30)
        let load = LoadGenerator(configuration)
        load.start()
        var replies: [ControlReply] = []
        for _ in 1...10 {
            replies.append(try baton.reload())
        }
        let report = load.stop()
        #expect(replies.allSatisfy { $0.ok }, "\(replies.filter { !$0.ok })\n\(baton.log)")
        #expect(report.totalFailures == 0, "failures: \(report.failures) \(report.failureSamples)")
        #expect(report.succeeded > 10, "the load must actually have run")
        print("packaged baton, 10 reloads: \(report.succeeded) requests, \(report.totalFailures) failed")
        #expect(baton.stop() == 0)
    }

    /// http.server through the packaged preload library, which baton finds in /usr/lib/baton.
    func preloadRecipe(_ host: Host, in scratch: ScratchDirectory) throws {
        try FileManager.default.createDirectory(atPath: "\(scratch.path)/www", withIntermediateDirectories: true)
        try scratch.write("www/index.html", "served by http.server\n")
        let port = freePort()
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--protocol", "preload",
                "--ready", ReloadUnderLoadTests.ThirdPartyServerTests.holdsItsSocket, "--drain-signal", "INT", "--",
                "/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "\(scratch.path)/www", "\(port)",
            ], in: scratch, launcher: host.enter, executable: "/usr/bin/baton")
        defer { baton.stop() }
        for generation in 1...2 {
            if generation > 1 { #expect(try baton.reload().ok, "\(baton.log)") }
            let status = try baton.waitUntilServing(generation: generation)
            let worker = try #require(status.generations.last?.workers.first?.pid)
            let environment = procFile("/proc/\(worker)/environ")
            #expect(environment.split(separator: "\0").contains("LD_PRELOAD=/usr/lib/baton/libbaton-preload.so"))
            let answer = try run("/usr/bin/curl", ["-s", "--max-time", "20", "http://127.0.0.1:\(port)/"])
            #expect(answer.output == "served by http.server\n", "\(answer.output)\n\(baton.log)")
        }
        #expect(baton.stop() == 0)
    }
}
