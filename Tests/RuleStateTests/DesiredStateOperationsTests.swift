import Testing
import RuleEngine
import RuleState

@Suite("Desired state operations (pure)")
struct DesiredStateOperationsTests {
    func rules(_ text: String) throws -> [Rule] { try RuleParser(family: .v4).parse(text) }

    @Test func rulesGoOnlyIntoChainsThatExist() throws {
        var state = DesiredState()
        #expect(throws: EngineError.self) { try state.addRules(try rules("-j ACCEPT"), table: .filter, chain: "FORWRAD") }
        #expect(state.rules.isEmpty && state.userChains.isEmpty)
        try state.createChain("FORWRAD", TableKey(.v4, .filter))
        let added = try state.addRules(try rules("-j ACCEPT"), table: .filter, chain: "FORWRAD")
        #expect(added.map(\.id) == ["r1"])
    }

    @Test func positionsAreChecked() throws {
        var state = DesiredState()
        try state.addRules(try rules("-j ACCEPT"), table: .filter, chain: "INPUT")
        try state.addRules(try rules("-j DROP"), table: .filter, chain: "INPUT", position: 1)
        #expect(state.rules.map(\.text) == ["-j DROP", "-j ACCEPT"])
        #expect(throws: EngineError.self) { try state.addRules(try rules("-j RETURN"), table: .filter, chain: "INPUT", position: 999_999) }
        #expect(throws: EngineError.self) { try state.addRules(try rules("-j RETURN"), table: .filter, chain: "INPUT", position: 0) }
        try state.addRules(try rules("-j RETURN"), table: .filter, chain: "INPUT", position: 3)
        #expect(state.rules.map(\.text) == ["-j DROP", "-j ACCEPT", "-j RETURN"])
    }
}
