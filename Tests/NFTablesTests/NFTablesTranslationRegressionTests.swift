import Foundation
import Testing
import NFTables
import NetNS
import RuleEngine
import TestSupport

/// Regressions found by the nftables differential (Tests/RuleSemanticsTests/NFTablesSemanticsTests).
@Suite("nftables backend: translation regressions")
struct NFTablesTranslationRegressionTests {
    func ruleset(_ text: String, comment: String? = nil) throws -> Ruleset {
        var rule = try rules([text])[0]
        if let comment { rule.matches.append(.comment(comment)) }
        return Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": [rule]])])
    }

    /// `! --ctstate SNAT` matches packets without a connection in xt_conntrack; nf_tables'
    /// `ct status` never matches them, so the backend must refuse rather than narrow the rule.
    @Test(arguments: ["-m conntrack ! --ctstate SNAT -j ACCEPT", "-m conntrack ! --ctstate DNAT,NEW -j DROP", "-m conntrack ! --ctstate SNAT,DNAT -j DROP"])
    func negatedNATStatesAreRefused(_ text: String) throws {
        let error = #expect(throws: EngineError.self) { try NFTablesBackend().validate(try ruleset(text)) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("! --ctstate with SNAT/DNAT"))
    }

    @Test(arguments: ["-m conntrack --ctstate SNAT -j ACCEPT", "-m conntrack --ctstate SNAT,DNAT -j ACCEPT", "-m conntrack ! --ctstate NEW,INVALID -j ACCEPT"])
    func plainNATStatesAndNegatedStatesStay(_ text: String) throws {
        try NFTablesBackend().validate(try ruleset(text))
    }

    /// `! -o +` never matches; the refusal names `-o`, not `-i`.
    @Test func negatedWildcardNamesItsOption() throws {
        let error = #expect(throws: EngineError.self) { try NFTablesBackend().validate(try ruleset("! -o + -j ACCEPT")) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("\"! -o +\" (never matches)"))
    }

    /// A comment over 243 bytes does not fit the rule's 256 bytes of user data next to docknfv's
    /// fingerprint: refused before the kernel is asked (it used to fail the whole batch with ERANGE).
    @Test func longCommentIsRefusedBeforeTheKernel() throws {
        let error = #expect(throws: EngineError.self) {
            try NFTablesBackend().validate(try ruleset("-j ACCEPT", comment: String(repeating: "c", count: 244)))
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("a comment over 243 bytes"))
    }

    @Test(.enabled(if: TestEnv.privileged)) func commentOf243BytesIsCommittedWhole() throws {
        let comment = String(repeating: "c", count: 243)
        try withNamespaces(["nftcm"]) { ns in
            _ = try apply(ns[0], try ruleset("-j ACCEPT", comment: comment))
            #expect(try listing(ns[0]).contains("counter accept comment \"\(comment)\""))
        }
    }
}
