import Testing

@testable import BatonCore

/// Request lines that are JSON but not a valid request get an error naming the field.
@Suite struct ControlRequestTests {
    func error(_ line: String) -> String? {
        if case .failure(let error) = ControlRequest.decode(line) { return error.description }
        return nil
    }

    @Test func aFractionOrAWrongTypeIsNamedByItsField() {
        #expect(error(#"{"command":"reload","canary":1,"weight":10.5}"#) == #"malformed reload request: "weight": expected a whole number, got 10.5"#)
        #expect(error(#"{"command":"scale","workers":1e30}"#) == #"malformed scale request: "workers": expected a whole number, got 1e+30"#)
        #expect(error(#"{"command":"scale","workers":"four"}"#) == #"malformed scale request: "workers": expected a whole number"#)
        #expect(error(#"{"command":"reload","wait":"yes"}"#) == #"malformed reload request: "wait": expected true or false"#)
        #expect(error(#"{"command":"reload","canary":1,"weight":10}"#) == nil)
    }
}
