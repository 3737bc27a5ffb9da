import Foundation
import Testing

/// The steering program's generated header (Sources/CBatonShim/bpf/steering_program.h),
/// read as steering.c uses it: the loader writes each map's descriptor into the
/// instructions the header names, so those must be the program's map loads, all of them.
/// (`SteeringGroupTests` load the program into the kernel; `generate --check` in .ci/run
/// proves the header is what the C source compiles to.)
@Suite struct SteeringProgramTests {
    struct Instruction: Equatable {
        var code: Int
        var destination: Int
        var source: Int
        var offset: Int
        var immediate: Int
    }

    /// BPF_LD | BPF_IMM | BPF_DW: a 64-bit immediate load, which takes two instructions.
    static let load64 = 0x18
    static let pseudoMapDescriptor = 1

    @Test func everyMapLoadTakesAMapDescriptor() throws {
        let (instructions, loads) = try Self.program()
        #expect(Set(loads.map(\.map)) == ["SOCKETS", "ROTATION", "COUNT", "COUNTERS", "SETTINGS", "FLOWS", "TAGS", "COOKIES", "DECISIONS"])
        for load in loads {
            try #require(load.instruction + 1 < instructions.count, "instruction \(load.instruction) of \(instructions.count)")
            let first = instructions[load.instruction]
            #expect(first.code == Self.load64, "instruction \(load.instruction) loads \(load.map)")
            #expect(first.source == Self.pseudoMapDescriptor, "instruction \(load.instruction) loads \(load.map)")
            #expect(first.immediate == 0, "the loader writes the descriptor")
            #expect(instructions[load.instruction + 1] == Instruction(code: 0, destination: 0, source: 0, offset: 0, immediate: 0))
        }
        // No map load is left without a descriptor.
        let marked = instructions.indices.filter {
            instructions[$0].code == Self.load64 && instructions[$0].source == Self.pseudoMapDescriptor
        }
        #expect(marked == loads.map(\.instruction).sorted())
    }

    /// The instructions and the map loads, as the header lists them.
    static func program() throws -> (instructions: [Instruction], loads: [(map: String, instruction: Int)]) {
        let header = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/CBatonShim/bpf/steering_program.h")
        let text = try String(contentsOf: header, encoding: .utf8)
        let instruction = try Regex(#"^\s*/\*\s*(\d+)\s*\*/\s*\{0x([0-9a-f]+), (\d+), (\d+), (-?\d+), (-?\d+)\},"#)
        let load = try Regex(#"^\s*\{BATON_STEERING_MAP_([A-Z_]+), (\d+)\},"#)
        var instructions: [Instruction] = []
        var loads: [(map: String, instruction: Int)] = []
        for line in text.split(separator: "\n") {
            if let match = try instruction.firstMatch(in: line) {
                let fields = (1...6).map { String(match.output[$0].substring ?? "") }
                #expect(Int(fields[0]) == instructions.count, "instructions are listed in order: \(line)")
                instructions.append(
                    Instruction(
                        code: Int(fields[1], radix: 16) ?? -1, destination: Int(fields[2]) ?? -1,
                        source: Int(fields[3]) ?? -1, offset: Int(fields[4]) ?? 0,
                        immediate: Int(fields[5]) ?? 0))
            } else if let match = try load.firstMatch(in: line) {
                loads.append((String(match.output[1].substring ?? ""), Int(match.output[2].substring ?? "") ?? -1))
            }
        }
        try #require(!instructions.isEmpty && !loads.isEmpty, "\(header.path) lists no program")
        return (instructions, loads)
    }
}
