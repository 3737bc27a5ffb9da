import Glibc

/// Where `libbaton-preload.so` is found when the configuration does not say.
enum PreloadLibrary {
    static let fileName = "libbaton-preload.so"

    /// Beside the running `baton` executable, where `swift build` puts both, or else in
    /// `../lib/baton/` from it, where the Debian package puts it (`/usr/lib/baton` for
    /// `/usr/bin/baton`): a shared library does not belong in a `bin` folder.
    static func besideExecutable() -> String {
        guard let executable = try? FileContents.link("/proc/self/exe"), let slash = executable.lastIndex(of: "/") else { return fileName }
        let folder = executable[..<slash]
        let beside = folder + "/" + fileName
        guard access(beside, F_OK) != 0, let parentSlash = folder.lastIndex(of: "/") else { return beside }
        let packaged = folder[..<parentSlash] + "/lib/baton/" + fileName
        return access(packaged, F_OK) == 0 ? packaged : beside
    }
}
