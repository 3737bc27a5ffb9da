/// Baton's version, as `baton --version` and `batonctl --version` print it,
/// `baton_build_info` labels it, and the Debian package (.ci/package-deb) is numbered.
public enum BatonVersion {
    public static let current = "0.9.0"
}
