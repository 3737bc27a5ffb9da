import Testing

@testable import Baton

/// What a person writes in a configuration file, as they would write it elsewhere: a command
/// as one string, split as systemd splits `ExecStart=`, and a mistyped key answered with
/// the key they meant.
@Suite struct ConfigurationWordingTests {
    func parse(_ text: String) throws(ConfigurationError) -> Configuration {
        try ConfigurationFile.parse(text, source: "baton.toml", defaultControlSocket: "/run/default.sock")
    }

    func command(_ written: String) throws(ConfigurationError) -> [String] {
        try parse("[workers]\ncommand = \(written)").workers.command
    }

    @Test(arguments: [
        (#""/usr/bin/server --flag""#, ["/usr/bin/server", "--flag"]),
        (#""  server   --port 8080 ""#, ["server", "--port", "8080"]),
        (#""server --name 'my app' \"two words\"""#, ["server", "--name", "my app", "two words"]),
        (#""server --greeting=\"hello world\"""#, ["server", "--greeting=hello world"]),
        (#""server 'it''s' \"\"""#, ["server", "its", ""]),
        (#""server a\\ b tab\\tstop \\x41\\102\\u00e9 back\\\\slash""#, ["server", "a b", "tab\tstop", "ABé", "back\\slash"]),
        (#""server 'a \"quoted\" word' \"it's\"""#, ["server", #"a "quoted" word"#, "it's"]),
        (#""server $HOME *.txt | cat""#, ["server", "$HOME", "*.txt", "|", "cat"]),
        // TOML's own escapes make a tab, a CR and a line feed: each separates words.
        (#""server\tone\r\ntwo""#, ["server", "one", "two"]),
        // The array form: taken as written, a space in a name included.
        (#"["/opt/my server/run", "--flag"]"#, ["/opt/my server/run", "--flag"]),
        (#"["a 'b'"]"#, ["a 'b'"]),
    ])
    func aCommandStringIsSplitAsSystemdSplitsExecStart(_ written: String, _ expected: [String]) throws {
        #expect(try command(written) == expected)
    }

    @Test(arguments: [
        (#""server 'open""#, #"baton.toml: workers.command = "server 'open": has a ' that is never closed"#),
        (#""server \\""#, #"baton.toml: workers.command = "server \": ends with a backslash, which escapes nothing"#),
        (#""server \\q""#, #"baton.toml: workers.command = "server \q": has \q, which is no escape (write \\ for a backslash)"#),
        (#""server \\xZZ""#, #"baton.toml: workers.command = "server \xZZ": has \x without the hexadecimal digits of a character other than NUL"#),
        (#""   ""#, #"baton.toml: workers.command = "   ": names no program: write the program and its arguments, such as "./server --flag""#),
    ])
    func aCommandStringThatCannotBeSplitIsRefusedSayingWhy(_ written: String, _ message: String) {
        #expect(throws: ConfigurationError.self) { try command(written) }
        do {
            _ = try command(written)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test(arguments: [
        ("[workers]\ncommand = [\"x\"]\ndrain_timout = \"5s\"", "baton.toml: workers.drain_timout: unknown key; did you mean `drain_timeout`?"),
        ("[workers]\ncommand = [\"x\"]\nready_timeuot = \"5s\"", "baton.toml: workers.ready_timeuot: unknown key; did you mean `ready_timeout`?"),
        ("[workers]\ncommand = [\"x\"]\ncomand = [\"y\"]", "baton.toml: workers.comand: unknown key; did you mean `command`?"),
        (
            "[[listener]]\nname = \"http\"\nadress = \"tcp://127.0.0.1:80\"\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].adress: unknown key; did you mean `address`?"
        ),
        ("metrcs = \"tcp://127.0.0.1:9102\"\n[workers]\ncommand = [\"x\"]", "baton.toml: metrcs: unknown key; did you mean `metrics`?"),
        ("count = 4\n[workers]\ncommand = [\"x\"]", "baton.toml: count: unknown key here; `count` belongs in [workers]"),
        (
            "[workers]\ncommand = [\"x\"]\nmetrics = \"tcp://127.0.0.1:9102\"",
            "baton.toml: workers.metrics: unknown key here; `metrics` belongs in the top level"
        ),
        ("[workers]\ncommand = [\"x\"]\nbacklog = 10", "baton.toml: workers.backlog: unknown key here; `backlog` belongs in [[listener]]"),
        (
            "[[listener]]\nname = \"http\"\naddress = \"tcp://127.0.0.1:80\"\nfrobnicate = 1\n[workers]\ncommand = [\"x\"]",
            "baton.toml: listener[0].frobnicate: unknown key; known keys here: address, address_in_use, backlog, flow_idle_timeout, flow_table_size, flows, mode, name, reuseport"
        ),
    ])
    func aMistypedKeyGetsTheKeyItMeant(_ text: String, _ message: String) {
        do {
            _ = try parse(text)
            Issue.record("\(text) must be refused")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func theDistanceCountsASwapOfNeighboursAsOneEdit() {
        #expect(KeySuggestion.distance(Array("cuont"), Array("count")) == 1)
        #expect(KeySuggestion.distance(Array("count"), Array("count")) == 0)
        #expect(KeySuggestion.distance(Array(""), Array("user")) == 4)
        #expect(KeySuggestion.nearest(to: "user", among: ["group", "umask"]) == nil, "too far to be a typo")
    }
}
