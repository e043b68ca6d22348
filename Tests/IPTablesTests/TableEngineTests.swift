import Foundation
import Testing
import IPTables
import NetNS
import RuleEngine
import TestSupport

@Suite("libiptc table engine in a real namespace", .enabled(if: TestEnv.privileged))
struct TableEngineTests {
    func rules(_ texts: [String], _ family: IPFamily = .v4) throws -> [Rule] {
        try texts.flatMap { try RuleParser(family: family).parse($0) }
    }

    func save(_ ns: TestNamespace, _ table: String = "filter", family: IPFamily = .v4) throws -> String {
        try ns.mustRun([family == .v4 ? "iptables-legacy-save" : "ip6tables-legacy-save", "-t", table])
            .split(separator: "\n").filter { !$0.hasPrefix("#") }.map { $0.replacingOccurrences(of: #"\[\d+:\d+\]"#, with: "[0:0]", options: .regularExpression) }
            .joined(separator: "\n")
    }

    func inside<T>(_ ns: TestNamespace, _ body: () throws -> T) throws -> T { try NetworkNamespace.run(path: ns.path, body) }

    @Test func applyTwiceCommitsOnceAndChangesNothing() throws {
        try withNamespaces(["ipt"]) { ns throws in
            let desired = TableRules(family: .v4, table: .filter,
                                     chains: ["FORWARD": try rules(["-p tcp --dport 80 -j ACCEPT", "-j web"]), "web": try rules(["-j ACCEPT"])],
                                     policies: ["FORWARD": "DROP"])
            #expect(try inside(ns[0]) { try TableEngine().apply(desired) })
            let first = try save(ns[0])
            #expect(try !inside(ns[0]) { try TableEngine().apply(desired) })
            #expect(try save(ns[0]) == first)
            #expect(try inside(ns[0]) { try TableEngine().check(desired) }.isEmpty)
            #expect(first.contains(":FORWARD DROP"))
            #expect(first.contains("-A FORWARD -m comment --comment docknfv -j DNFV-FORWARD"))
            #expect(first.contains("-A DNFV-FORWARD -j DNFV-web"))
        }
    }

    @Test func foreignRulesAndChainsSurviveEveryOperation() throws {
        try withNamespaces(["ipt"]) { ns throws in
            let pristine = try save(ns[0])
            _ = try ns[0].mustRun(["iptables-legacy", "-N", "FOREIGN"])
            _ = try ns[0].mustRun(["iptables-legacy", "-A", "FOREIGN", "-j", "RETURN"])
            _ = try ns[0].mustRun(["iptables-legacy", "-A", "FORWARD", "-s", "192.0.2.0/24", "-j", "DROP"])
            _ = try ns[0].mustRun(["iptables-legacy", "-I", "INPUT", "-j", "FOREIGN"])
            let foreign = try save(ns[0])
            var desired = TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j ACCEPT"]), "INPUT": try rules(["-p icmp -j ACCEPT"])])
            try inside(ns[0]) { _ = try TableEngine().apply(desired) }
            let applied = try save(ns[0])
            for line in foreign.split(separator: "\n") where line.hasPrefix("-A") || line.hasPrefix(":FOREIGN") {
                #expect(applied.contains(line), "lost \(line)")
            }
            // Our jump goes first; the foreign rules keep their order after it.
            #expect(applied.contains("-A INPUT -m comment --comment docknfv -j DNFV-INPUT\n-A INPUT -j FOREIGN"))
            desired.chains["INPUT"] = []
            try inside(ns[0]) { _ = try TableEngine().apply(desired) }
            #expect(!(try save(ns[0])).contains("DNFV-INPUT"))
            try inside(ns[0]) { _ = try TableEngine().remove(family: .v4, table: .filter) }
            #expect(try save(ns[0]) == foreign)
            _ = try ns[0].mustRun(["iptables-legacy", "-D", "INPUT", "-j", "FOREIGN"])
            _ = try ns[0].mustRun(["iptables-legacy", "-D", "FORWARD", "-s", "192.0.2.0/24", "-j", "DROP"])
            _ = try ns[0].mustRun(["iptables-legacy", "-F", "FOREIGN"])
            _ = try ns[0].mustRun(["iptables-legacy", "-X", "FOREIGN"])
            #expect(try save(ns[0]) == pristine)
        }
    }

    @Test func aBadRuleInTheBatchAppliesNothing() throws {
        try withNamespaces(["ipt"]) { ns throws in
            try inside(ns[0]) { _ = try TableEngine().apply(TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j ACCEPT"])])) }
            let before = try save(ns[0])
            let bad = TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j DROP", "-p tcp -j nosuchchain"])])
            #expect(throws: IPTablesError.unknownChain(chain: "nosuchchain", rule: "-p tcp -j nosuchchain")) {
                try inside(ns[0]) { try TableEngine().apply(bad) }
            }
            let wrongTable = TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j DROP", "-p tcp -j DNAT --to-destination 10.0.0.1:80"])])
            #expect(throws: IPTablesError.self) { try inside(ns[0]) { try TableEngine().apply(wrongTable) } }
            #expect(try save(ns[0]) == before)
        }
    }

    @Test func aForeignJumpIntoOurChainBlocksRemovalAndChangesNothing() throws {
        try withNamespaces(["ipt"]) { ns throws in
            let desired = TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-j web"]), "web": try rules(["-j ACCEPT"])])
            try inside(ns[0]) { _ = try TableEngine().apply(desired) }
            _ = try ns[0].mustRun(["iptables-legacy", "-A", "OUTPUT", "-j", "DNFV-web"])
            let before = try save(ns[0])
            #expect(throws: IPTablesError.foreignReference(chain: "DNFV-web")) {
                try inside(ns[0]) { try TableEngine().remove(family: .v4, table: .filter) }
            }
            #expect(try save(ns[0]) == before)
        }
    }

    @Test func ipv6TablesAreSeparate() throws {
        try withNamespaces(["ipt"]) { ns throws in
            let v6 = TableRules(family: .v6, table: .filter, chains: ["INPUT": try rules(["-p ipv6-icmp -j ACCEPT"], .v6)])
            try inside(ns[0]) { _ = try TableEngine().apply(v6) }
            #expect(try save(ns[0], family: .v6).contains("-A DNFV-INPUT -p ipv6-icmp -j ACCEPT"))
            #expect(!(try save(ns[0])).contains("DNFV"))
        }
    }

    @Test func lockHeldByAnotherProgramTimesOut() throws {
        let path = NSTemporaryDirectory() + "dnfvt-lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let holder = try XtablesLock(path: path, timeout: 1)
        #expect(throws: IPTablesError.lockTimeout(path: path, seconds: 0.2)) { try XtablesLock(path: path, timeout: 0.2) }
        withExtendedLifetime(holder) {}
    }
}
