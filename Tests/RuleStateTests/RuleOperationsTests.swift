import Testing
import RuleEngine
import RuleState

/// The pure operations front ends make on a namespace's desired state (RuleOperations.swift):
/// what each does, and that each refusal is an `invalidInput` error naming the problem and leaves
/// the state exactly as it was.
@Suite("Rule operations on the desired state (pure)")
struct RuleOperationsTests {
    static let filter4 = TableKey(.v4, .filter), filter6 = TableKey(.v6, .filter), nat4 = TableKey(.v4, .nat)

    func rule(_ text: String, _ family: IPFamily = .v4) throws -> Rule {
        let parsed = try RuleParser(family: family).parse(text)
        try #require(parsed.count == 1)
        return parsed[0]
    }

    /// The texts of one chain's rules in order (the state keeps every chain in one list).
    func chain(_ state: DesiredState, _ name: String, _ table: NetfilterTable = .filter, _ family: IPFamily = .v4) -> [String] {
        state.rules.filter { $0.table == table && $0.chain == name && $0.family == family }.map(\.text)
    }

    /// Runs a change that must be refused: an invalidInput error whose message contains `message`,
    /// and the state unchanged.
    func refused(_ state: DesiredState, _ message: String, sourceLocation: SourceLocation = #_sourceLocation,
                 _ change: (inout DesiredState) throws -> Void) {
        var copy = state
        do {
            try change(&copy)
            Issue.record("accepted; expected an error containing \"\(message)\"", sourceLocation: sourceLocation)
        } catch let error as EngineError {
            #expect(error.code == .invalidInput, sourceLocation: sourceLocation)
            #expect(error.message.contains(message), "\(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("not an EngineError: \(error)", sourceLocation: sourceLocation)
        }
        #expect(copy == state, "a refused change altered the state", sourceLocation: sourceLocation)
    }

    // MARK: Add and insert

    @Test func addAppendsWithFreshIdsAndCanonicalText() throws {
        var state = DesiredState()
        let added = try state.addRules([try rule("-p tcp --dport 80 -j ACCEPT"), try rule("-s 10.1.2.3/8 -j DROP")], table: .filter, chain: "FORWARD")
        #expect(added.map(\.id) == ["r1", "r2"])
        #expect(added.map(\.text) == ["-p tcp -m tcp --dport 80 -j ACCEPT", "-s 10.0.0.0/8 -j DROP"])
        try state.addRules([try rule("-j ACCEPT")], table: .filter, chain: "INPUT")
        #expect(state.rules.map(\.id) == ["r1", "r2", "r3"])
        #expect(state.nextID == 4)
        #expect(chain(state, "FORWARD") == ["-p tcp -m tcp --dport 80 -j ACCEPT", "-s 10.0.0.0/8 -j DROP"])
    }

    @Test func insertCountsPositionsWithinItsOwnChainOnly() throws {
        var state = DesiredState()
        // Chains interleaved in the state's single list: INPUT a, FORWARD b, INPUT c, nat POSTROUTING d.
        try state.addRules([try rule("-s 10.0.0.1 -j ACCEPT")], table: .filter, chain: "INPUT")
        try state.addRules([try rule("-s 10.0.0.2 -j ACCEPT")], table: .filter, chain: "FORWARD")
        try state.addRules([try rule("-s 10.0.0.3 -j ACCEPT")], table: .filter, chain: "INPUT")
        try state.addRules([try rule("-s 10.0.0.4 -j MASQUERADE")], table: .nat, chain: "POSTROUTING")
        try state.addRules([try rule("-s 10.0.0.5 -j DROP")], table: .filter, chain: "INPUT", position: 2)
        #expect(chain(state, "INPUT") == ["-s 10.0.0.1/32 -j ACCEPT", "-s 10.0.0.5/32 -j DROP", "-s 10.0.0.3/32 -j ACCEPT"])
        // Position 1 of a chain whose first rule is not first in the list.
        try state.addRules([try rule("-s 10.0.0.6 -j DROP")], table: .filter, chain: "FORWARD", position: 1)
        #expect(chain(state, "FORWARD") == ["-s 10.0.0.6/32 -j DROP", "-s 10.0.0.2/32 -j ACCEPT"])
        // The position after the last rule appends.
        try state.addRules([try rule("-s 10.0.0.7 -j DROP")], table: .filter, chain: "INPUT", position: 4)
        #expect(chain(state, "INPUT").last == "-s 10.0.0.7/32 -j DROP")
        // Several rules at one position keep their order there.
        try state.addRules([try rule("-s 10.0.0.8 -j DROP"), try rule("-s 10.0.0.9 -j DROP")], table: .filter, chain: "INPUT", position: 1)
        #expect(chain(state, "INPUT") == ["-s 10.0.0.8/32 -j DROP", "-s 10.0.0.9/32 -j DROP", "-s 10.0.0.1/32 -j ACCEPT",
                                          "-s 10.0.0.5/32 -j DROP", "-s 10.0.0.3/32 -j ACCEPT", "-s 10.0.0.7/32 -j DROP"])
        // Other chains and tables did not move.
        #expect(chain(state, "POSTROUTING", .nat) == ["-s 10.0.0.4/32 -j MASQUERADE"])
        #expect(chain(state, "FORWARD") == ["-s 10.0.0.6/32 -j DROP", "-s 10.0.0.2/32 -j ACCEPT"])
    }

    @Test func insertCountsPositionsPerFamily() throws {
        var state = DesiredState()
        try state.addRules([try rule("-s fd00::1 -j ACCEPT", .v6), try rule("-s fd00::2 -j ACCEPT", .v6)], table: .filter, chain: "INPUT")
        try state.addRules([try rule("-s 10.0.0.1 -j ACCEPT")], table: .filter, chain: "INPUT")
        // One insert holding rules of both families (a host name with A and AAAA records): each
        // goes to position 1 of its own family's chain.
        try state.addRules([try rule("-s 10.0.0.9 -j DROP"), try rule("-s fd00::9 -j DROP", .v6)], table: .filter, chain: "INPUT", position: 1)
        #expect(chain(state, "INPUT", .filter, .v4) == ["-s 10.0.0.9/32 -j DROP", "-s 10.0.0.1/32 -j ACCEPT"])
        #expect(chain(state, "INPUT", .filter, .v6) == ["-s fd00::9/128 -j DROP", "-s fd00::1/128 -j ACCEPT", "-s fd00::2/128 -j ACCEPT"])
        // Each family's chain ends at its own length + 1: 3 for IPv4, 4 for IPv6.
        refused(state, "position 5 is outside chain INPUT") { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "INPUT", position: 5) }
        // A position one family's chain has and the other's has not: neither rule goes in.
        refused(state, "position 4 is outside chain INPUT (1 to 3)") {
            try $0.addRules([try rule("-s fd00::7 -j DROP", .v6), try rule("-s 10.0.0.7 -j DROP")], table: .filter, chain: "INPUT", position: 4)
        }
        try state.addRules([try rule("-j DROP", .v6)], table: .filter, chain: "INPUT", position: 4)
        #expect(chain(state, "INPUT", .filter, .v6).last == "-j DROP")
    }

    @Test func badPositionsAndMissingChainsChangeNothing() throws {
        var state = DesiredState()
        try state.addRules([try rule("-j ACCEPT")], table: .filter, chain: "INPUT")
        refused(state, "position 0 is outside chain INPUT (1 to 2)") { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "INPUT", position: 0) }
        refused(state, "position -1 is outside chain INPUT") { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "INPUT", position: -1) }
        refused(state, "position 3 is outside chain INPUT (1 to 2)") { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "INPUT", position: 3) }
        refused(state, "chain \"web\" does not exist in ipv4 table filter") { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "web") }
        // A built-in chain of another table is not one of this table's.
        refused(state, "chain \"POSTROUTING\" does not exist in ipv4 table filter") { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "POSTROUTING") }
        refused(state, "no rule given") { try $0.addRules([], table: .filter, chain: "INPUT") }
        // A user chain exists per family: created for IPv4, it is still missing for IPv6.
        try state.createChain("web", Self.filter4)
        refused(state, "chain \"web\" does not exist in ipv6 table filter") { try $0.addRules([try rule("-j DROP", .v6)], table: .filter, chain: "web") }
    }

    // MARK: Delete

    @Test func deleteByIdRemovesExactlyThatRule() throws {
        var state = DesiredState()
        try state.addRules([try rule("-j ACCEPT"), try rule("-j DROP"), try rule("-j RETURN")], table: .filter, chain: "FORWARD")
        try state.deleteRule(id: "r2")
        #expect(state.rules.map(\.id) == ["r1", "r3"])
        refused(state, "no rule with id \"r2\"") { try $0.deleteRule(id: "r2") }
        refused(state, "no rule with id \"nope\"") { try $0.deleteRule(id: "nope") }
        // Ids are never reused, even after the highest one was deleted.
        try state.deleteRule(id: "r3")
        #expect(try state.addRules([try rule("-j DROP")], table: .filter, chain: "FORWARD").map(\.id) == ["r4"])
    }

    @Test func deleteByTextRemovesTheFirstEqualRuleInThatChain() throws {
        var state = DesiredState()
        try state.addRules([try rule("-p tcp -m tcp --dport 22 -j ACCEPT")], table: .filter, chain: "INPUT")
        try state.addRules([try rule("-p tcp --dport 22 -j ACCEPT"), try rule("-j DROP"), try rule("-p tcp --dport 22 -j ACCEPT")], table: .filter, chain: "FORWARD")
        // Written differently from how it was added: the rule, not the text, is compared.
        try state.deleteRules([try rule("-p tcp -m tcp --dport 22 -j ACCEPT")], table: .filter, chain: "FORWARD")
        #expect(state.rules.map(\.id) == ["r1", "r3", "r4"])
        try state.deleteRules([try rule("-p tcp --dport 22 -j ACCEPT")], table: .filter, chain: "FORWARD")
        #expect(state.rules.map(\.id) == ["r1", "r3"])
        refused(state, "chain FORWARD in filter has no rule \"-p tcp -m tcp --dport 22 -j ACCEPT\"") {
            try $0.deleteRules([try rule("-p tcp --dport 22 -j ACCEPT")], table: .filter, chain: "FORWARD")
        }
        // The same rule in another family is another rule.
        refused(state, "has no rule \"-j DROP\"") { try $0.deleteRules([try rule("-j DROP", .v6)], table: .filter, chain: "FORWARD") }
        // Several rules: one missing refuses them all.
        refused(state, "has no rule \"-j RETURN\"") {
            try $0.deleteRules([try rule("-j DROP"), try rule("-j RETURN")], table: .filter, chain: "FORWARD")
        }
    }

    // MARK: Flush

    func populated() throws -> DesiredState {
        var state = DesiredState()
        try state.createChain("web", Self.filter4)
        try state.createChain("web", Self.nat4)
        try state.addRules([try rule("-j web")], table: .filter, chain: "FORWARD")
        try state.addRules([try rule("-j ACCEPT")], table: .filter, chain: "web")
        try state.addRules([try rule("-j ACCEPT", .v6)], table: .filter, chain: "INPUT")
        try state.addRules([try rule("-j MASQUERADE")], table: .nat, chain: "POSTROUTING")
        try state.addRules([try rule("-j RETURN")], table: .nat, chain: "web")
        try state.setPolicy("DROP", chain: "FORWARD", Self.filter4)
        try state.setPolicy("DROP", chain: "INPUT", Self.filter6)
        try state.createSet("friends", type: .hashIP, family: .v4, entries: ["10.0.0.1"])
        return state
    }

    @Test func flushEverythingKeepsOnlySetsAndIds() throws {
        var state = try populated()
        try state.flush(table: nil, chain: nil)
        #expect(state.rules.isEmpty && state.userChains.isEmpty && state.policies.isEmpty)
        #expect(state.sets.keys.sorted() == ["friends"])
        #expect(state.newID() == "r6")
    }

    @Test func flushOneTableLeavesTheOthers() throws {
        var state = try populated()
        try state.flush(table: .filter, chain: nil)
        // Both families' filter tables are emptied, with their policies and chains.
        #expect(state.rules.map(\.id) == ["r4", "r5"])
        #expect(state.userChains == [.init(Self.nat4, "web")])
        #expect(state.policies.isEmpty)
        try state.flush(table: .nat, chain: nil)
        #expect(state.isEmpty == false) // the set remains
        #expect(state.rules.isEmpty && state.userChains.isEmpty)
    }

    @Test func flushOneChainKeepsTheChainAndPolicies() throws {
        var state = try populated()
        try state.flush(table: .filter, chain: "web")
        #expect(state.rules.map(\.id) == ["r1", "r3", "r4", "r5"])
        #expect(state.userChains.count == 2)
        #expect(state.policies.count == 2)
        // Without a table, the chain of that name in every table.
        var all = try populated()
        try all.flush(table: nil, chain: "web")
        #expect(all.rules.map(\.id) == ["r1", "r3", "r4"])
        try all.flush(table: .filter, chain: "FORWARD")
        #expect(all.rules.map(\.id) == ["r3", "r4"])
        #expect(all.policies[.init(Self.filter4, "FORWARD")] == "DROP")
        refused(all, "no chain \"nosuch\" in table filter") { try $0.flush(table: .filter, chain: "nosuch") }
        refused(all, "no chain \"nosuch\"") { try $0.flush(table: nil, chain: "nosuch") }
        refused(all, "no chain \"web\" in table mangle") { try $0.flush(table: .mangle, chain: "web") }
    }

    // MARK: Chains

    @Test func chainsAreCreatedPerFamilyAndTable() throws {
        var state = DesiredState()
        try state.createChain("web-1_x.y", Self.filter4)
        #expect(state.chainExists("web-1_x.y", Self.filter4))
        #expect(!state.chainExists("web-1_x.y", Self.filter6))
        #expect(!state.chainExists("web-1_x.y", Self.nat4))
        #expect(state.chainExists("FORWARD", Self.filter6)) // built-in
        try state.createChain("web-1_x.y", Self.filter4) // again: still one chain
        #expect(state.userChains.count == 1)
        try state.createChain(String(repeating: "c", count: 23), Self.filter4)
        for bad in ["", "FORWARD", "a b", "a/b", "-x", "!x", "ünï", String(repeating: "c", count: 24)] {
            refused(state, "is invalid or too long") { try $0.createChain(bad, Self.filter4) }
        }
    }

    @Test func aChainIsDeletedWithItsRulesOnlyWhenNothingJumpsToIt() throws {
        var state = DesiredState()
        try state.createChain("web", Self.filter4)
        try state.createChain("web", Self.filter6)
        try state.addRules([try rule("-j ACCEPT")], table: .filter, chain: "web")
        try state.addRules([try rule("-j DROP", .v6)], table: .filter, chain: "web")
        try state.addRules([try rule("-p tcp -j web")], table: .filter, chain: "FORWARD")
        try state.addRules([try rule("-p udp -g web")], table: .filter, chain: "INPUT")
        refused(state, "rule r3 still jumps to web; delete it first") { try $0.deleteChain("web", Self.filter4) }
        try state.deleteRule(id: "r3")
        refused(state, "rule r4 still jumps to web") { try $0.deleteChain("web", Self.filter4) } // a goto counts too
        try state.deleteRule(id: "r4")
        try state.deleteChain("web", Self.filter4)
        #expect(state.rules.map(\.id) == ["r2"]) // the IPv6 chain and its rule stay
        #expect(state.userChains == [.init(Self.filter6, "web")])
        refused(state, "no chain \"web\" in ipv4/filter") { try $0.deleteChain("web", Self.filter4) }
        refused(state, "no chain \"FORWARD\"") { try $0.deleteChain("FORWARD", Self.filter4) }
    }

    // MARK: Policies

    @Test func policiesOnlyOnBuiltinChainsAndOnlyAcceptOrDrop() throws {
        var state = DesiredState()
        try state.setPolicy("drop", chain: "FORWARD", Self.filter4)
        #expect(state.policies == [.init(Self.filter4, "FORWARD"): "DROP"])
        try state.setPolicy("ACCEPT", chain: "FORWARD", Self.filter4)
        #expect(state.policies == [.init(Self.filter4, "FORWARD"): "ACCEPT"])
        try state.setPolicy("DROP", chain: "POSTROUTING", Self.nat4)
        refused(state, "policy \"REJECT\": expected ACCEPT or DROP") { try $0.setPolicy("REJECT", chain: "INPUT", Self.filter4) }
        refused(state, "\"POSTROUTING\" is not a built-in chain of filter") { try $0.setPolicy("DROP", chain: "POSTROUTING", Self.filter4) }
        try state.createChain("web", Self.filter4)
        refused(state, "\"web\" is not a built-in chain of filter") { try $0.setPolicy("DROP", chain: "web", Self.filter4) }
    }

    // MARK: Sets

    @Test func setsAreCreatedWithTheirElementsDeduplicated() throws {
        var state = DesiredState()
        try state.createSet("nets", type: .hashNet, family: .v4, entries: ["10.0.0.0/8", "10.1.2.3/8", "192.0.2.7"])
        #expect(state.sets["nets"]?.entries.map(\.description) == ["10.0.0.0/8", "192.0.2.7"])
        try state.createSet("ports6", type: .hashIPPort, family: .v6, entries: ["fd00::1,udp:53"])
        #expect(state.sets["ports6"] == SetSpec(type: .hashIPPort, family: .v6, entries: [SetEntry("fd00::1,udp:53", type: .hashIPPort)!]))
        refused(state, "set nets exists already") { try $0.createSet("nets", type: .hashIP, family: .v4) }
        refused(state, "\"fd00::1\" is not a valid ipv4 element of hash:ip set other") {
            try $0.createSet("other", type: .hashIP, family: .v4, entries: ["10.0.0.1", "fd00::1"])
        }
        refused(state, "\"10.0.0.0/8\" is not a valid ipv4 element of hash:ip set other") {
            try $0.createSet("other", type: .hashIP, family: .v4, entries: ["10.0.0.0/8"])
        }
        try state.createSet("tagged", type: .hashIPMark, family: .v4, entries: ["10.0.0.1,0x5", "10.0.0.1,5", "10.0.0.1,31"])
        #expect(state.sets["tagged"]?.entries.map(\.description) == ["10.0.0.1,0x00000005", "10.0.0.1,0x0000001f"])
        for bad in ["10.0.0.1", "10.0.0.1,", "10.0.0.1,0x", "10.0.0.1,0x100000000", "10.0.0.1,tag", "10.0.0.0/8,0x5", "10.0.0.1,+5", "10.0.0.1,0x+5", "10.0.0.1,-1", "10.0.0.1,1f"] {
            refused(state, "\"\(bad)\" is not a valid ipv4 element of hash:ip,mark set other") {
                try $0.createSet("other", type: .hashIPMark, family: .v4, entries: [bad])
            }
        }
        for bad in ["", "a b", "q\"uote", "back\\slash", "-x", String(repeating: "s", count: 32), "dnfv~tmp~1"] {
            refused(state, "set name") { try $0.createSet(bad, type: .hashIP, family: .v4) }
        }
    }

    @Test func elementsAreAddedAndDeleted() throws {
        var state = DesiredState()
        try state.createSet("hosts", type: .hashIP, family: .v4, entries: ["10.0.0.1"])
        try state.addElements(["10.0.0.2", "10.0.0.1", "10.0.0.3"], to: "hosts") // already present is fine
        #expect(state.sets["hosts"]?.entries.map(\.description) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        try state.deleteElements(["10.0.0.1", "10.0.0.3"], from: "hosts")
        #expect(state.sets["hosts"]?.entries.map(\.description) == ["10.0.0.2"])
        refused(state, "10.0.0.9 is not in set hosts") { try $0.deleteElements(["10.0.0.2", "10.0.0.9"], from: "hosts") }
        refused(state, "\"nonsense\" is not a valid ipv4 element") { try $0.addElements(["10.0.0.4", "nonsense"], to: "hosts") }
        refused(state, "no docknfv set \"ghost\"") { try $0.addElements(["10.0.0.1"], to: "ghost") }
        refused(state, "no docknfv set \"ghost\"") { try $0.deleteElements(["10.0.0.1"], from: "ghost") }
    }

    @Test func aSetInUseIsNotDestroyed() throws {
        var state = DesiredState()
        try state.createSet("blocked", type: .hashNet, family: .v4, entries: ["192.0.2.0/24"])
        try state.createSet("unused", type: .hashNet, family: .v4)
        try state.addRules([try rule("-m set --match-set blocked src -j DROP")], table: .filter, chain: "FORWARD")
        refused(state, "rule r1 matches on set blocked; delete it first") { try $0.destroySet("blocked") }
        try state.destroySet("unused")
        #expect(state.sets.keys.sorted() == ["blocked"])
        try state.deleteRule(id: "r1")
        try state.destroySet("blocked")
        #expect(state.sets.isEmpty)
        refused(state, "no docknfv set \"blocked\"") { try $0.destroySet("blocked") }
    }

    // MARK: Import

    @Test func importMergesChainsPoliciesAndRulesAfterDocknfvsOwn() throws {
        var state = DesiredState()
        try state.addRules([try rule("-j LOG")], table: .filter, chain: "FORWARD")
        let file = try SaveFileReader.read("""
            *filter
            :INPUT ACCEPT [0:0]
            :FORWARD DROP [12:345]
            :web - [0:0]
            -A FORWARD -p tcp --dport 80 -j web
            -A web -s 10.50.0.0/24 -j ACCEPT
            -A INPUT -i lo -j ACCEPT
            COMMIT
            *nat
            -A POSTROUTING -o r1 -j MASQUERADE
            COMMIT
            """, family: .v4)
        #expect(try state.merge(file, family: .v4) == 4)
        #expect(chain(state, "FORWARD") == ["-j LOG", "-p tcp -m tcp --dport 80 -j web"])
        #expect(chain(state, "web") == ["-s 10.50.0.0/24 -j ACCEPT"])
        #expect(chain(state, "INPUT") == ["-i lo -j ACCEPT"])
        #expect(chain(state, "POSTROUTING", .nat) == ["-o r1 -j MASQUERADE"])
        #expect(state.userChains == [.init(Self.filter4, "web")])
        #expect(state.policies == [.init(Self.filter4, "FORWARD"): "DROP"]) // an ACCEPT line sets nothing
        #expect(state.rules.map(\.id) == ["r1", "r2", "r3", "r4", "r5"])
        // Importing the same file again adds its rules again, and the chain is not duplicated.
        #expect(try state.merge(file, family: .v4) == 4)
        #expect(state.rules.count == 9 && state.userChains.count == 1)
    }

    @Test func importOfAnIPv6FileGoesToIPv6Tables() throws {
        var state = DesiredState()
        let file = try SaveFileReader.read("*filter\n:svc - [0:0]\n-A INPUT -p tcp --dport 22 -j svc\n-A svc -s fd00::/8 -j ACCEPT\nCOMMIT\n", family: .v6)
        #expect(try state.merge(file, family: .v6) == 2)
        #expect(state.userChains == [.init(Self.filter6, "svc")])
        #expect(chain(state, "INPUT", .filter, .v6) == ["-p tcp -m tcp --dport 22 -j svc"])
        #expect(state.saveText(family: .v6) == """
            *filter
            :INPUT ACCEPT [0:0]
            :FORWARD ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :svc - [0:0]
            -A INPUT -p tcp -m tcp --dport 22 -j svc
            -A svc -s fd00::/8 -j ACCEPT
            COMMIT

            """)
        #expect(state.saveText(family: .v4) == "")
    }
}
