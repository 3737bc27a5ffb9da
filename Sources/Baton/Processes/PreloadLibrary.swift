import Glibc

/// Where `libbaton-preload.so` is found when the configuration does not say.
enum PreloadLibrary {
    static let fileName = "libbaton-preload.so"

    /// Beside the running `baton` executable, where `swift build` puts both.
    static func besideExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return fileName }
        let executable = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = executable.lastIndex(of: "/") else { return fileName }
        return executable[..<slash] + "/" + fileName
    }
}
