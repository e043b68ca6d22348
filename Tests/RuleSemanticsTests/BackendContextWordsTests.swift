import Testing
import IPTables
import NFTables
import RuleEngine

/// A match out of its place (RuleContext) is refused by both backends, before either touches the
/// kernel, with the same words.
@Suite("Rule context: both backends refuse with the same words")
struct BackendContextWordsTests {
    @Test(arguments: [
        (NetfilterTable.filter, "INPUT", "-m owner --uid-owner 0 -j ACCEPT", "-m owner cannot be reached from INPUT"),
        (.nat, "OUTPUT", "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", "-m addrtype --limit-iface-in cannot be reached from OUTPUT"),
        (.nat, "PREROUTING", "-m addrtype --src-type LOCAL --limit-iface-out -j ACCEPT", "-m addrtype --limit-iface-out cannot be reached from PREROUTING"),
    ])
    func sameWords(table: NetfilterTable, chain: String, text: String, words: String) throws {
        let ruleset = Ruleset(tables: [TableRules(family: .v4, table: table, chains: [chain: try RuleParser(family: .v4).parse(text)])])
        let refusals = [XTablesBackend() as any RuleBackend, NFTablesBackend()].map { backend in
            do { try backend.validate(ruleset); return "accepted" } catch { return "\(error)" }
        }
        #expect(refusals[0] == refusals[1])
        #expect(refusals[0].contains("in \(chain): \"") && refusals[0].contains(words), "\(refusals[0])")
    }
}
