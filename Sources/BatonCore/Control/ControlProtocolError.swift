/// Why a request line was refused, in words for the person who sent it.
public struct ControlProtocolError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
