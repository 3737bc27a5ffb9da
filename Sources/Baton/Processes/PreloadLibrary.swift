import Glibc

/// Where `libbaton-preload.so` is found when the configuration does not say.
enum PreloadLibrary {
    static let fileName = "libbaton-preload.so"

    /// Beside the running `baton` executable, where `swift build` puts both.
    static func besideExecutable() -> String {
        guard let executable = try? FileContents.link("/proc/self/exe"), let slash = executable.lastIndex(of: "/") else { return fileName }
        return executable[..<slash] + "/" + fileName
    }
}
