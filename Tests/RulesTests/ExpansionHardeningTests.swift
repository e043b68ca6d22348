import Testing
import Rules

/// Issue 8 items 13 and 15: `$VAR` / `${VAR}` expansion on the command line takes only whole
/// references, and messages echo at most a bounded part of what they were given.
@Suite("Rule parser: expansion and echoed input (issue 8)")
struct ExpansionHardeningTests {
    let parser = RuleParser(environment: ["X": "1", "PORT": "8443", "LONG": String(repeating: "9", count: 100_000)])

    @Test(arguments: [
        ("${X", "unterminated ${"), ("a${X", "unterminated ${"), ("${X${X}", "is not a variable name"),
        ("${}", "${} is not a variable name"), ("${A-B}", "${A-B} is not a variable name"), ("${X Y}", "${X Y} is not a variable name"),
    ])
    func badReferencesAreRefusedNotExpanded(comment: String, reason: String) throws {
        do {
            let rules = try parser.parse(tokens: ["-m", "comment", "--comment", comment, "-j", "ACCEPT"])
            Issue.record("accepted \(comment): \(rules.map(RuleRenderer.render))")
        } catch {
            #expect(error.token == comment, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    @Test func wholeReferencesAndLoneDollarsStillWork() throws {
        let rules = try parser.parse(tokens: ["-p", "tcp", "--dport", "${PORT}", "-m", "comment", "--comment", "a$X-${X}b $ 5$", "-j", "ACCEPT"])
        #expect(rules.map(RuleRenderer.render) == [#"-p tcp -m tcp --dport 8443 -m comment --comment "a1-1b $ 5$" -j ACCEPT"#])
    }

    /// A 100 KB value (here a port, which the reason quotes) comes back as a short message.
    @Test(arguments: [["-p", "tcp", "--dport", String(repeating: "1", count: 100_000), "-j", "ACCEPT"],
                      ["-p", "tcp", "--dport", "$LONG", "-j", "ACCEPT"],
                      ["-j", String(repeating: "A", count: 100_000)]])
    func hugeInputIsNotEchoedBack(tokens: [String]) throws {
        do {
            _ = try parser.parse(tokens: tokens)
            Issue.record("accepted a 100 KB token")
        } catch {
            #expect(error.description.utf8.count < 1_000, "\(error.description.utf8.count) bytes: \(error.description.prefix(300))")
        }
    }
}
