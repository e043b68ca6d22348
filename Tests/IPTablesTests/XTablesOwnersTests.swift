import Foundation
import Testing
import IPSet
import IPTables
import NetNS
import RuleEngine
import TestSupport

@Suite("x_tables chain names per owner")
struct OwnerChainsTests {
    @Test func prefixesAreStableAndNeverOverlap() throws {
        let cli = OwnerChains(.cli)
        let a = OwnerChains(try Owner("cni-0123456789abcdef")), b = OwnerChains(try Owner("cni-fedcba9876543210"))
        #expect(cli.prefix == "DNFV-" && cli.jumpComment == "docknfv")
        // FNV-1a 32 of the name, worked out by hand: what the kernel holds, so it never changes.
        #expect(a.prefix == "DN51c0f3b6-" && b.prefix == "DN6bd0dae6-")
        #expect(a.jumpComment == "docknfv cni-0123456789abcdef")
        #expect(OwnerChains(try Owner("x")).prefix.count == 11)
        for (one, other) in [(cli, a), (a, cli), (a, b), (b, a)] {
            for chain in ["FORWARD", "POSTROUTING", "fw", "DNFV-x", "1a2b3c4d-x"] {
                #expect(!other.owns(one.kernelName(chain)), "\(other.prefix) owns \(one.kernelName(chain))")
            }
        }
        #expect(a.chain(ofKernel: "DN51c0f3b6-fw") == "fw" && cli.chain(ofKernel: "DN51c0f3b6-fw") == nil)
        #expect(a.maxChainLength == 17 && cli.maxChainLength == 23)
        #expect(a.isValidUserChain(String(repeating: "c", count: 17)) && !a.isValidUserChain(String(repeating: "c", count: 18)))
        #expect(a.kernelName("POSTROUTING").count <= ChainNames.maxKernelLength)
    }
}

/// Several owners' rulesets in one namespace's legacy x_tables, `iptables-legacy-save` the oracle.
@Suite("x_tables backend with several owners", .enabled(if: TestEnv.privileged))
struct XTablesOwnersTests {
    static let a = try! Owner("cni-0123456789abcdef"), b = try! Owner("cni-fedcba9876543210")

    func rules(_ texts: [String], _ family: IPFamily = .v4) throws -> [Rule] {
        try texts.flatMap { try RuleParser(family: family).parse($0) }
    }

    /// An attachment's rules: filter (a user chain named alike for every owner), nat, and IPv6.
    func attachment(_ owner: Owner, _ n: Int, sets: [String: SetSpec] = [:]) throws -> Ruleset {
        Ruleset(owner: owner, tables: [
            TableRules(family: .v4, table: .filter, chains: [
                "FORWARD": try rules(["-s 10.\(n).0.0/16 -j fw"]), "fw": try rules(["-p tcp --dport 80 -j ACCEPT", "-j DROP"]),
            ]),
            TableRules(family: .v4, table: .nat, chains: [
                "PREROUTING": try rules(["-p tcp --dport \(8000 + n) -j DNAT --to-destination 10.\(n).0.2:80"]),
                "POSTROUTING": try rules(["-s 10.\(n).0.0/16 -j MASQUERADE"]),
            ]),
            TableRules(family: .v6, table: .filter, chains: ["FORWARD": try rules(["-s fd00:\(n)::/64 -j ACCEPT"], .v6)]),
        ], sets: sets)
    }

    func cliRuleset() throws -> Ruleset {
        Ruleset(tables: [
            TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-p tcp --dport 22 -j ACCEPT"]), "INPUT": try rules(["-i lo -j ACCEPT"])],
                       policies: ["FORWARD": "DROP"]),
            TableRules(family: .v4, table: .nat, chains: ["PREROUTING": try rules(["-p udp --dport 53 -j REDIRECT --to-ports 5353"])]),
        ])
    }

    /// Both families' every table, counters zeroed.
    func save(_ ns: TestNamespace) throws -> [String] {
        try ["iptables-legacy-save", "ip6tables-legacy-save"].flatMap { tool in
            try ns.mustRun([tool]).split(separator: "\n").filter { !$0.hasPrefix("#") }
                .map { $0.replacingOccurrences(of: #"\[\d+:\d+\]"#, with: "[0:0]", options: .regularExpression) }
        }
    }

    func without(_ owner: Owner, _ lines: [String]) -> [String] { lines.filter { !$0.contains(OwnerChains(owner).prefix) } }

    func inside<T>(_ ns: TestNamespace, _ body: () throws -> T) throws -> T { try NetworkNamespace.run(path: ns.path, body) }

    func drift(_ ns: TestNamespace, _ ruleset: Ruleset) throws -> [String] {
        try inside(ns) { try XTablesBackend().check(ruleset) }.flatMap { key, drift in drift.items.map { "\(key) \($0)" } }
    }

    @Test func twoOwnersAndTheCLIKeepApartThroughApplyCheckAndRemove() throws {
        try withNamespaces(["xtown"]) { ns throws in
            let backend = XTablesBackend()
            _ = try ns[0].mustRun(["iptables-legacy", "-A", "FORWARD", "-s", "192.0.2.0/24", "-j", "DROP"])
            _ = try ns[0].mustRun(["iptables-legacy", "-t", "nat", "-N", "FOREIGN"])
            _ = try ns[0].mustRun(["ip6tables-legacy", "-A", "INPUT", "-s", "2001:db8::/32", "-j", "DROP"])
            let pristine = try save(ns[0])
            let a = try attachment(Self.a, 1), b = try attachment(Self.b, 2), cli = try cliRuleset()
            for ruleset in [a, cli, b] {
                let report = try inside(ns[0]) { try backend.apply(ruleset, previous: Ruleset(owner: ruleset.owner)) }
                #expect(report.committed == ruleset.tables.map(\.key).sorted(), "\(ruleset.owner)")
            }
            let applied = try save(ns[0])
            let pa = OwnerChains(Self.a).prefix, pb = OwnerChains(Self.b).prefix
            // IPv4: docknfvctl's jump first (though applied after a's), b's after it, a's pushed
            // down, the foreign rule last. IPv6 (no docknfvctl rules): the latest on top.
            let jumpA = "-A FORWARD -m comment --comment \"docknfv cni-0123456789abcdef\" -j \(pa)FORWARD"
            let jumpB = "-A FORWARD -m comment --comment \"docknfv cni-fedcba9876543210\" -j \(pb)FORWARD"
            #expect(applied.filter { $0.hasPrefix("-A FORWARD") } == [
                "-A FORWARD -m comment --comment docknfv -j DNFV-FORWARD", jumpB, jumpA, "-A FORWARD -s 192.0.2.0/24 -j DROP",
                jumpB, jumpA,
            ])
            for line in ["-A \(pa)FORWARD -s 10.1.0.0/16 -j \(pa)fw", "-A \(pb)fw -p tcp -m tcp --dport 80 -j ACCEPT", ":FORWARD DROP [0:0]",
                         "-A \(pa)PREROUTING -p tcp -m tcp --dport 8001 -j DNAT --to-destination 10.1.0.2:80",
                         "-A \(pb)FORWARD -s fd00:2::/64 -j ACCEPT", ":FOREIGN - [0:0]"] {
                #expect(applied.contains(line), "missing \(line)")
            }
            // Again: nothing to commit for anyone, nothing moves, nobody drifts.
            for ruleset in [a, b, cli] {
                let report = try inside(ns[0]) { try backend.apply(ruleset, previous: ruleset) }
                #expect(report.committed.isEmpty && report.unchanged == ruleset.tables.map(\.key).sorted(), "\(ruleset.owner)")
                #expect(try drift(ns[0], ruleset).isEmpty, "\(ruleset.owner)")
            }
            #expect(try save(ns[0]) == applied)

            // Removing a leaves b, docknfvctl and the foreign rules byte for byte.
            #expect(try inside(ns[0]) { try backend.remove(a) })
            let withoutA = try save(ns[0])
            #expect(withoutA == without(Self.a, applied))
            #expect(try !inside(ns[0]) { try backend.remove(a) })
            for ruleset in [b, cli] { #expect(try drift(ns[0], ruleset).isEmpty, "\(ruleset.owner)") }
            #expect(try drift(ns[0], a).contains("ipv6/filter chain \(pa)FORWARD"))

            // With the owner alone (its state lost): every table, both families.
            _ = try inside(ns[0]) { try backend.apply(a, previous: Ruleset(owner: Self.a)) }
            #expect(try inside(ns[0]) { try backend.remove(Ruleset(owner: Self.a)) })
            #expect(try save(ns[0]) == withoutA)
            #expect(try inside(ns[0]) { try backend.remove(Ruleset(owner: Self.b)) })
            #expect(try save(ns[0]) == without(Self.b, withoutA))
            #expect(try drift(ns[0], cli).isEmpty)
            #expect(try inside(ns[0]) { try backend.remove(cli) })
            #expect(try save(ns[0]) == pristine)
        }
    }

    @Test func aRuleDeletedByHandIsDriftOfItsOwnerOnly() throws {
        try withNamespaces(["xtdrift"]) { ns throws in
            let backend = XTablesBackend()
            let a = try attachment(Self.a, 1), b = try attachment(Self.b, 2), cli = try cliRuleset()
            for ruleset in [cli, a, b] { _ = try inside(ns[0]) { try backend.apply(ruleset, previous: Ruleset(owner: ruleset.owner)) } }
            let pa = OwnerChains(Self.a).prefix
            _ = try ns[0].mustRun(["iptables-legacy", "-D", "\(pa)fw", "1"])
            _ = try ns[0].mustRun(["iptables-legacy", "-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "docknfv \(Self.a)", "-j", "\(pa)POSTROUTING"])
            // A foreign rule on top pushes every jump down: only docknfvctl's must be first.
            _ = try ns[0].mustRun(["iptables-legacy", "-I", "FORWARD", "-j", "ACCEPT"])
            #expect(try drift(ns[0], a).sorted() == [
                "ipv4/filter -A fw -j DROP (position 2)",
                "ipv4/filter -A fw -p tcp -m tcp --dport 80 -j ACCEPT (position 1)",
                "ipv4/nat jump from POSTROUTING to docknfv's chain (docknfvctl's as its first rule)",
            ])
            #expect(try drift(ns[0], b).isEmpty)
            #expect(try drift(ns[0], cli) == ["ipv4/filter jump from FORWARD to docknfv's chain (docknfvctl's as its first rule)"])
            // A second jump of b's own is drift too (exactly one each).
            _ = try ns[0].mustRun(["iptables-legacy", "-A", "FORWARD", "-m", "comment", "--comment", "docknfv \(Self.b)", "-j", "\(OwnerChains(Self.b).prefix)FORWARD"])
            #expect(try drift(ns[0], b) == ["ipv4/filter jump from FORWARD to a docknfv chain"])
            for ruleset in [a, b, cli] {
                #expect(try !inside(ns[0]) { try backend.apply(ruleset, previous: ruleset) }.committed.isEmpty, "\(ruleset.owner)")
            }
            let repaired = try save(ns[0])
            for ruleset in [a, b, cli] {
                #expect(try drift(ns[0], ruleset).isEmpty, "\(ruleset.owner)")
                #expect(try inside(ns[0]) { try backend.apply(ruleset, previous: ruleset) }.committed.isEmpty, "\(ruleset.owner)")
            }
            #expect(try save(ns[0]) == repaired)
            // One jump of b's in each family's FORWARD chain.
            #expect(repaired.filter { $0.hasPrefix("-A FORWARD") && $0.contains("-j \(OwnerChains(Self.b).prefix)FORWARD") }.count == 2)
        }
    }

    @Test func whatAnOwnerCannotHaveIsRefusedBeforeAnythingChanges() throws {
        try withNamespaces(["xtrefuse"]) { ns throws in
            let backend = XTablesBackend()
            _ = try inside(ns[0]) { try backend.apply(try attachment(Self.a, 1), previous: Ruleset(owner: Self.a)) }
            let before = try save(ns[0])
            let policy = Ruleset(owner: Self.b, tables: [TableRules(family: .v4, table: .filter, policies: ["FORWARD": "DROP"])])
            let long = String(repeating: "c", count: 18)
            let longChain = Ruleset(owner: Self.b, tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j \(long)"]), long: []])])
            for (ruleset, code) in [(policy, EngineError.Code.unsupported), (longChain, .invalidInput)] {
                for call in [{ try backend.validate(ruleset) }, { _ = try backend.apply(ruleset, previous: Ruleset(owner: Self.b)) }] {
                    do { try inside(ns[0], call); Issue.record("accepted \(ruleset)") } catch let error as EngineError {
                        #expect(error.code == code, "\(error)")
                        #expect(error.message.contains(Self.b.name), "\(error)")
                    }
                }
            }
            // docknfvctl keeps its longer chain names and its policies.
            let cli = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j \(long)"]), long: []], policies: ["FORWARD": "DROP"])])
            try inside(ns[0]) { try backend.validate(cli) }
            #expect(try save(ns[0]) == before)
        }
    }

    @Test func ownersWhoseNamesHashAlikeAreRefusedNotMerged() throws {
        // FNV-1a 32 gives both 0bc2a82e (found by search).
        let one = try Owner("cni-298eb"), other = try Owner("cni-62938")
        #expect(OwnerChains(one).prefix == OwnerChains(other).prefix)
        try withNamespaces(["xtclash"]) { ns throws in
            let backend = XTablesBackend()
            _ = try inside(ns[0]) { try backend.apply(try attachment(one, 1), previous: Ruleset(owner: one)) }
            let before = try save(ns[0])
            for call in [{ _ = try backend.apply(try attachment(other, 2), previous: Ruleset(owner: other)) }, { _ = try backend.remove(Ruleset(owner: other)) }] {
                do { try inside(ns[0], call); Issue.record("shared chains with \(one)") } catch let error as EngineError {
                    #expect(error.code == .conflict, "\(error)")
                    #expect(error.message.contains("cni-298eb and cni-62938") || error.message.contains("cni-62938 and cni-298eb"), "\(error)")
                }
            }
            #expect(try save(ns[0]) == before)
        }
    }

    @Test func removingAnOwnerDestroysOnlyTheSetsOfItsPreviousRuleset() throws {
        try withNamespaces(["xtsets"]) { ns throws in
            let backend = XTablesBackend()
            let spec = SetSpec(type: .hashNet, family: .v4, entries: [SetEntry("10.9.0.0/16", type: .hashNet)!])
            func owning(_ owner: Owner, _ set: String) throws -> Ruleset {
                Ruleset(owner: owner, tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-m set --match-set \(set) src -j DROP"])])],
                        sets: [set: spec])
            }
            let a = try owning(Self.a, "a-blocked"), b = try owning(Self.b, "b-blocked"), cli = try owning(.cli, "blocked")
            for ruleset in [a, b, cli] { _ = try inside(ns[0]) { try backend.apply(ruleset, previous: Ruleset(owner: ruleset.owner)) } }
            let names = { Set(try ns[0].mustRun(["ipset", "list", "-n"]).split(separator: "\n").map(String.init)) }
            #expect(try names() == ["a-blocked", "b-blocked", "blocked"])
            #expect(try inside(ns[0]) { try backend.remove(a) })
            #expect(try names() == ["b-blocked", "blocked"])
            // Without its previous ruleset, an owner's chains go and its sets stay (nothing says whose they are).
            #expect(try inside(ns[0]) { try backend.remove(Ruleset(owner: Self.b)) })
            #expect(try names() == ["b-blocked", "blocked"])
            #expect(try !(save(ns[0]).joined(separator: "\n").contains("b-blocked")))
            #expect(try drift(ns[0], cli).isEmpty)
        }
    }

    @Test func tenOwnersApplyingAtOnceFromTheirOwnThreadsLoseNothing() throws {
        try withNamespaces(["xtconc"]) { ns throws in
            let owners = try (0..<10).map { try Owner("cni-\(String(format: "%016x", 0x1000 + $0))") }
            let rulesets = try owners.enumerated().map { try attachment($0.element, $0.offset + 10) }
            let errors = Errors()
            let done = DispatchGroup()
            for ruleset in rulesets {
                done.enter()
                let path = ns[0].path
                Thread {
                    defer { done.leave() }
                    do { _ = try NetworkNamespace.run(path: path) { try XTablesBackend().apply(ruleset, previous: Ruleset(owner: ruleset.owner)) } }
                    catch { errors.append("\(ruleset.owner): \(error)") }
                }.start()
            }
            #expect(done.wait(timeout: .now() + 120) == .success)
            #expect(errors.all.isEmpty, "\(errors.all)")
            let saved = try save(ns[0])
            for ruleset in rulesets {
                #expect(try drift(ns[0], ruleset).isEmpty, "\(ruleset.owner)")
                let comment = "--comment \"docknfv \(ruleset.owner)\""
                #expect(saved.filter { $0.contains(comment) }.count == 4, "\(ruleset.owner)") // v4 FORWARD, PREROUTING, POSTROUTING; v6 FORWARD
            }
            #expect(saved.filter { $0.hasPrefix("-A FORWARD") }.count == 20)
        }
    }
}

/// Errors from several threads. `@unchecked Sendable`: every access holds the lock.
final class Errors: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var all: [String] { lock.withLock { items } }
}
