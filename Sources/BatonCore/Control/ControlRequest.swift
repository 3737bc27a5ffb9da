#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The control protocol, spoken over Baton's unix control socket: one JSON object
/// per line in each direction. A client sends one request; Baton answers with zero
/// or more progress replies (`"final": false`) and one final reply, then closes.
/// See `Docs/control-protocol.md`.
public struct ControlRequest: Codable, Sendable, Equatable {
    /// What the request asks for; the raw value is the `command` on the wire.
    public enum Command: String, Codable, Sendable, CaseIterable {
        case status, reload, scale, upgrade, stop, promote, rollback
    }

    public var command: Command
    /// For `reload`, `scale`, `promote`, `rollback` and `stop`: stream progress and answer
    /// only when it is over (a canary reload: once the canary holds its share).
    public var wait: Bool?
    /// With `wait`, for `reload`, `scale`, `promote` and `rollback`: answer only once the
    /// replaced generation's workers have exited too.
    public var drained: Bool?
    /// For `scale`: the number of worker slots from now on.
    public var workers: Int?
    /// For `reload`: `all-at-once` or `rolling`, for this reload only, instead of the
    /// configuration's `strategy`.
    public var strategy: String?
    /// For `reload`: with the rolling strategy, how many slots at a time, for this reload only.
    public var batch: Int?
    /// For `reload`: start this many workers of the new generation as a canary.
    public var canary: Int?
    /// For `reload` with `canary`: the canary's share of new connections, in percent.
    public var weight: Int?
    /// For `reload` with `canary`: how long it holds (a duration such as `5m`), then `after`.
    public var hold: String?
    /// For `reload` with `canary` and `hold`: `promote` or `rollback` at the end of the hold.
    public var after: String?

    public init(
        command: Command, wait: Bool? = nil, workers: Int? = nil, strategy: String? = nil, batch: Int? = nil,
        canary: Int? = nil, weight: Int? = nil, hold: String? = nil, after: String? = nil, drained: Bool? = nil
    ) {
        self.command = command
        self.wait = wait
        self.drained = drained
        self.workers = workers
        self.strategy = strategy
        self.batch = batch
        self.canary = canary
        self.weight = weight
        self.hold = hold
        self.after = after
    }

    /// Decodes one request line, with an error a person can act on.
    public static func decode(_ line: String) -> Result<ControlRequest, ControlProtocolError> {
        struct Envelope: Decodable {
            var command: String?
        }
        let data = Data(line.utf8)
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: data) else {
            return .failure(.init("not a JSON object: send one line such as {\"command\":\"status\"}"))
        }
        guard let name = envelope.command else {
            return .failure(.init("the request has no \"command\""))
        }
        guard Command(rawValue: name) != nil else {
            let known = Command.allCases.map(\.rawValue).joined(separator: ", ")
            return .failure(.init("unknown command \"\(name)\"; known commands: \(known)"))
        }
        do {
            return .success(try JSONDecoder().decode(ControlRequest.self, from: data))
        } catch let error as DecodingError {
            return .failure(.init("malformed \(name) request: \(explain(error, in: data))"))
        } catch {
            return .failure(.init("malformed \(name) request: \(error)"))
        }
    }

    /// Names the field a decoding error is about and what it expected. Foundation reports
    /// a fraction (or a number too large) in a whole-number field as "not valid JSON", so
    /// those fields are looked at first, read as any number.
    static func explain(_ error: DecodingError, in data: Data) -> String {
        struct Numbers: Decodable {
            var workers, batch, canary, weight: Double?
        }
        if let numbers = try? JSONDecoder().decode(Numbers.self, from: data) {
            let fields = [("workers", numbers.workers), ("batch", numbers.batch), ("canary", numbers.canary), ("weight", numbers.weight)]
            for case (let field, let value?) in fields where value.rounded() != value || value.magnitude >= 0x1p62 {
                return "\"\(field)\": expected a whole number, got \(value)"
            }
        }
        switch error {
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            let expected = type == Int.self ? "a whole number" : type == Bool.self ? "true or false" : "a string"
            return "\"\(field)\": expected \(expected)"
        case .keyNotFound(let key, _):
            return "\"\(key.stringValue)\" is missing"
        case .dataCorrupted(let context):
            return context.debugDescription
        @unknown default:
            return "\(error)"
        }
    }

    /// The request as one line of JSON, newline included.
    public func encodedLine() -> String {
        ControlJSON.line(self)
    }
}
