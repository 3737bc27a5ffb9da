import Glibc

extension dirent {
    /// The entry's name (`d_name`, up to its terminating zero).
    var name: String {
        withUnsafeBytes(of: d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
