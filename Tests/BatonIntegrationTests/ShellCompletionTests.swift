import BatonCore
import Foundation
import Testing

/// `baton` and `batonctl` write their own shell completion scripts (swift-argument-parser's
/// `--generate-completion-script`, Docs/command-line.md). Each bash script is loaded into
/// a real bash and asked to complete, as bash does on TAB.
@Suite struct ShellCompletionTests {
    /// What `tool`'s bash completion offers for the last of `words`.
    func complete(_ tool: String, _ words: [String], in scratch: ScratchDirectory) throws -> [String] {
        let script = try run(Products.path(tool), ["--generate-completion-script", "bash"])
        #expect(script.status == 0, "\(script.output)")
        #expect(script.output.contains("complete -o filenames -F _\(tool) \(tool)"), "the script must register itself for \(tool)")
        try scratch.write("\(tool).bash", script.output)
        // bash calls the completion function with the command, the word being completed
        // and the one before it, and reads COMPREPLY.
        try scratch.write(
            "complete.sh",
            """
            source "$1"; shift
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
            "_$1" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\\n' "${COMPREPLY[@]}"
            """)
        let completion = try run("/bin/bash", ["\(scratch.path)/complete.sh", "\(scratch.path)/\(tool).bash", tool] + words)
        #expect(completion.status == 0, "\(completion.output)")
        return completion.output.split(separator: "\n").map(String.init)
    }

    @Test func batonCompletesItsOptions() throws {
        let scratch = ScratchDirectory()
        let options = try complete("baton", ["--"], in: scratch)
        for option in ["--config", "--listen", "--workers", "--ready", "--drain-signal", "--drain-timeout", "--protocol", "--control"] {
            #expect(options.contains(option), "\(option) in \(options)")
        }
        #expect(Set(try complete("baton", ["--dr"], in: scratch)) == ["--drain-grace", "--drain-signal", "--drain-timeout"])
    }

    @Test func batonctlCompletesItsSubcommandsAndTheirOptions() throws {
        let scratch = ScratchDirectory()
        let subcommands = try complete("batonctl", [""], in: scratch)
        for subcommand in ["status", "reload", "scale", "promote", "rollback", "upgrade", "stop"] {
            #expect(subcommands.contains(subcommand), "\(subcommand) in \(subcommands)")
        }
        let statusOptions = try complete("batonctl", ["status", "--"], in: scratch)
        for option in ["--json", "--prometheus", "--control"] {
            #expect(statusOptions.contains(option), "\(option) in \(statusOptions)")
        }
        #expect(Set(try complete("batonctl", ["reload", "--w"], in: scratch)) == ["--wait", "--wait-drained", "--weight"])
    }

    @Test func batonPrintsItsVersion() throws {
        let version = try run(Products.path("baton"), ["--version"])
        #expect(version.status == 0 && version.output == "\(BatonVersion.current)\n", "\(version.output)")
    }

    @Test(arguments: ["zsh", "fish"])
    func otherShellsGetAScriptToo(_ shell: String) throws {
        for tool in ["baton", "batonctl"] {
            let script = try run(Products.path(tool), ["--generate-completion-script", shell])
            #expect(script.status == 0 && script.output.contains("control socket"), "\(tool) \(shell): \(script.output.prefix(300))")
        }
    }
}
