#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One line of Baton's answer.
public struct ControlReply: Codable, Sendable, Equatable {
    public var ok: Bool
    /// The last line of the answer.
    public var final: Bool
    /// A progress or result line for people.
    public var message: String?
    /// Why the request failed.
    public var error: String?
    /// What kind of failure it was; nil from a Baton older than this field.
    public var failure: ControlFailure?
    /// For `reload`: the generation that serves afterwards.
    public var generation: Int?
    /// For `status`: the whole status.
    public var status: StatusReport?

    public init(
        ok: Bool, final: Bool, message: String? = nil, error: String? = nil,
        generation: Int? = nil, status: StatusReport? = nil
    ) {
        self.ok = ok
        self.final = final
        self.message = message
        self.error = error
        self.generation = generation
        self.status = status
    }

    /// A final reply that refuses the request, saying why and what kind of failure it is.
    public static func failure(_ error: String, _ failure: ControlFailure) -> ControlReply {
        var reply = ControlReply(ok: false, final: true, error: error)
        reply.failure = failure
        return reply
    }

    /// The reply as one line of JSON, newline included.
    public func encodedLine() -> String {
        ControlJSON.line(self)
    }

    /// One reply line, or nil when it is not one.
    public static func decode(_ line: String) -> ControlReply? {
        try? JSONDecoder().decode(ControlReply.self, from: Data(line.utf8))
    }
}
