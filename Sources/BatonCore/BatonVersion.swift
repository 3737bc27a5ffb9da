/// Baton's version, as `baton --version` prints it, `baton_build_info` labels it, and the
/// Debian package (.ci/package-deb) is numbered.
public enum BatonVersion {
    public static let current = "0.1.0"
}
