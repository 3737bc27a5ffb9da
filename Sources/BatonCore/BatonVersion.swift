/// The version `baton --version` and `batonctl --version` print.
public enum BatonVersion {
    public static let current = "0.9.0"
}
