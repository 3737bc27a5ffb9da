import Glibc

/// Where `baton` listens for and `batonctl` finds the control socket when no path is given.
public enum ControlSocketPath {
    /// The variable that names the path: `BATON_CONTROL_SOCKET`.
    public static let environmentVariable = "BATON_CONTROL_SOCKET"

    /// `$BATON_CONTROL_SOCKET`, else `$RUNTIME_DIRECTORY/baton.sock` (systemd's
    /// `RuntimeDirectory=`), else `/run/baton.sock` for root, else
    /// `$XDG_RUNTIME_DIR/baton.sock`, else `/tmp/baton-<uid>.sock`.
    public static func `default`() -> String {
        func variable(_ name: String) -> String? {
            getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        if let path = variable(environmentVariable) { return path }
        if let directory = variable("RUNTIME_DIRECTORY") {
            // systemd may list several directories, separated by colons.
            return "\(directory.split(separator: ":").first ?? "")/baton.sock"
        }
        if getuid() == 0 { return "/run/baton.sock" }
        if let directory = variable("XDG_RUNTIME_DIR") { return "\(directory)/baton.sock" }
        return "/tmp/baton-\(getuid()).sock"
    }
}
