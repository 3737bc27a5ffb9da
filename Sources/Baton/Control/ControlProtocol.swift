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
    public enum Command: String, Codable, Sendable, CaseIterable {
        case status, reload, scale, upgrade, stop
    }

    public var command: Command
    /// For `reload` and `scale`: stream progress and answer only when the reload is over.
    public var wait: Bool?
    /// For `scale`: the number of worker slots from now on.
    public var workers: Int?

    public init(command: Command, wait: Bool? = nil, workers: Int? = nil) {
        self.command = command
        self.wait = wait
        self.workers = workers
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
        } catch {
            return .failure(.init("malformed \(name) request: \(error)"))
        }
    }

    public func encodedLine() -> String {
        ControlJSON.line(self)
    }
}

/// One line of Baton's answer.
public struct ControlReply: Codable, Sendable, Equatable {
    public var ok: Bool
    /// The last line of the answer.
    public var final: Bool
    /// A progress or result line for people.
    public var message: String?
    public var error: String?
    /// For `reload`: the generation that serves afterwards.
    public var generation: Int?
    public var status: StatusReport?

    public init(ok: Bool, final: Bool, message: String? = nil, error: String? = nil,
                generation: Int? = nil, status: StatusReport? = nil) {
        self.ok = ok
        self.final = final
        self.message = message
        self.error = error
        self.generation = generation
        self.status = status
    }

    public static func failure(_ error: String) -> ControlReply {
        ControlReply(ok: false, final: true, error: error)
    }

    public func encodedLine() -> String {
        ControlJSON.line(self)
    }
}

public struct ControlProtocolError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

enum ControlJSON {
    static func line<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding our own plain structs cannot fail.
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

extension ControlReply {
    public static func decode(_ line: String) -> ControlReply? {
        try? JSONDecoder().decode(ControlReply.self, from: Data(line.utf8))
    }
}
