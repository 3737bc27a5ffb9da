/// Why a request failed, in a word a script can act on (`batonctl` turns it into its
/// exit code). A value this client does not know yet reads as it is.
public struct ControlFailure: RawRepresentable, Codable, Sendable, Hashable {
    public var rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// The new generation, canary or binary failed; what served before serves on.
    public static let rolledBack = ControlFailure(rawValue: "rolled-back")
    /// The configuration is invalid; nothing changed.
    public static let configuration = ControlFailure(rawValue: "configuration")
    /// Not now: a reload or canary is under way, two generations are alive, or Baton is
    /// stopping; nothing changed, and the same request may succeed later.
    public static let refused = ControlFailure(rawValue: "refused")
    /// The client may not make this request.
    public static let permission = ControlFailure(rawValue: "permission")
    /// The request is malformed or asks for something out of range; nothing changed.
    public static let invalid = ControlFailure(rawValue: "invalid")
}
