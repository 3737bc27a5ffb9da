/// A value that does not follow its notation, such as an address or a duration; the
/// description says what was expected.
public struct FormatError: Error, Equatable, CustomStringConvertible {
    public var description: String
    package init(_ description: String) { self.description = description }
}
