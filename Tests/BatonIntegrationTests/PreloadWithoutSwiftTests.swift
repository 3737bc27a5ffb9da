import BatonCore
import Foundation
import Testing

/// The whole of a file of /proc, whose size says 0: Foundation's String(contentsOfFile:)
/// stops after the first page of one.
func procFile(_ path: String) -> String {
    guard let file = FileHandle(forReadingAtPath: path) else { return "" }
    defer { try? file.close() }
    return String(decoding: file.readDataToEndOfFile(), as: UTF8.self)
}

/// The Swift toolchain this test bundle runs on: the directory above `usr/lib/swift`
/// of the libswiftCore.so it has loaded (`/opt/swift` here), or nil when the Swift
/// runtime is linked in statically.
enum SwiftToolchain {
    static let directory: String? = {
        for line in procFile("/proc/self/maps").split(separator: "\n") {
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last, path.hasSuffix("/libswiftCore.so"),
                let range = path.range(of: "/usr/lib/swift/")
            else { continue }
            return String(path[..<range.lowerBound])
        }
        return nil
    }()

    /// `command` run in a mount namespace of its own where the toolchain's directory is
    /// an empty tmpfs: as on a host where Swift was never installed. The pid stays the
    /// command's (unshare and sh each exec the next), as Baton's protocols need.
    static func hidden(_ command: [String], toolchain: String) -> [String] {
        let quoted = command.map { "'\($0.replacingOccurrences(of: "'", with: #"'\''"#))'" }.joined(separator: " ")
        return [
            "/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            "mount -t tmpfs -o ro,mode=755 tmpfs '\(toolchain)' && exec \(quoted)",
        ]
    }

    /// Why a test that hides the toolchain cannot run here, or nil when it can.
    static var cannotHide: String? {
        if getuid() != 0 { return "a mount namespace needs root" }
        if directory == nil { return "no Swift toolchain is loaded by this test bundle" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") { return "/usr/bin/unshare is not installed" }
        return nil
    }
}

/// `libbaton-preload.so` is C, loaded into servers that have nothing to do with Swift: it
/// needs the C library alone, and works on a host without the Swift toolchain.
@Suite struct PreloadWithoutSwiftTests {
    static let python = "/usr/bin/python3"

    /// The dynamic section names no Swift library and no search path into the toolchain.
    @Test func theLibraryNeedsOnlyTheCLibrary() throws {
        let library = Products.path("libbaton-preload.so")
        let dynamic = try run("/usr/bin/readelf", ["--dynamic", library])
        #expect(dynamic.status == 0, "\(dynamic.output)")
        let needed = dynamic.output.split(separator: "\n").filter { $0.contains("(NEEDED)") }
        #expect(!needed.isEmpty, "readelf must list what the library needs: \(dynamic.output)")
        #expect(needed.allSatisfy { $0.contains("[libc.so.6]") || $0.contains("[libdl.so.2]") }, "\(needed.joined(separator: "\n"))")
        #expect(!dynamic.output.lowercased().contains("swift"), "no Swift library, no RUNPATH into a toolchain: \(dynamic.output)")
    }

    /// `python3 -m http.server`, preloaded, in a mount namespace where the toolchain's
    /// directory is empty: it serves Baton's socket, and reloads take over.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: PreloadWithoutSwiftTests.python), "needs /usr/bin/python3"))
    func pythonHTTPServerThroughThePreloadLibraryWithTheToolchainHidden() throws {
        if let reason = SwiftToolchain.cannotHide {
            print("skipped: \(reason)")
            return
        }
        let toolchain = try #require(SwiftToolchain.directory)
        let scratch = ScratchDirectory()
        try FileManager.default.createDirectory(atPath: "\(scratch.path)/www", withIntermediateDirectories: true)
        try scratch.write("www/index.html", "served by http.server\n")
        let port = freePort()
        let server = [Self.python, "-m", "http.server", "--bind", "127.0.0.1", "--directory", "\(scratch.path)/www", "\(port)"]
        let baton = try BatonUnderTest(
            [
                "--listen", "http=tcp://127.0.0.1:\(port)", "--workers", "2", "--protocol", "preload",
                "--ready", ReloadUnderLoadTests.ThirdPartyServerTests.holdsItsSocket, "--drain-signal", "INT",
                "--ready-timeout", "30s", "--drain-timeout", "10s", "--",
            ] + SwiftToolchain.hidden(server, toolchain: toolchain),
            in: scratch)
        defer { baton.stop() }
        for generation in 1...3 {
            if generation > 1 {
                let reply = try baton.reload()
                #expect(reply.ok, "\(reply)\n\(baton.log)")
            }
            let status = try baton.waitUntilServing(generation: generation)
            let worker = try #require(status.generations.last?.workers.first?.pid)
            // The server runs where the toolchain is empty, and has the library loaded.
            let seen = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(worker)/root\(toolchain)")
            #expect(seen.isEmpty, "the toolchain must be hidden from the server: \(seen)")
            #expect(procFile("/proc/\(worker)/maps").contains("libbaton-preload.so"), "the library must be loaded into the server")
            let answer = try run("/usr/bin/curl", ["-s", "--max-time", "20", "http://127.0.0.1:\(port)/"])
            #expect(answer.output == "served by http.server\n", "\(answer.output)\n\(baton.log)")
        }
        #expect(!baton.log.contains("error while loading shared libraries"), "\(baton.log)")
        #expect(baton.stop() == 0)
    }
}
