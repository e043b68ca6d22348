import Foundation
import Testing
import IPSet
import IPTables
import NetNS
import RuleEngine
import TestSupport

/// Issue 8 items 2 and 12: refilling a set never touches a set docknfv did not create (the old
/// `NAME-tmp` was destroyed whoever made it), and a temporary set a killed run left behind is
/// drift for `check` (it was called "in sync") and is destroyed by the next apply.
@Suite("ipset temporaries (issue 8 items 2, 12)", .enabled(if: TestEnv.privileged))
struct IPSetTemporaryTests {
    func members(_ ns: TestNamespace, _ name: String) throws -> Set<String> {
        let parts = try ns.mustRun(["ipset", "list", name]).components(separatedBy: "Members:\n")
        return Set(parts.count > 1 ? parts[1].split(separator: "\n").map(String.init) : [])
    }

    func names(_ ns: TestNamespace) throws -> Set<String> {
        Set(try ns.mustRun(["ipset", "list", "-n"]).split(separator: "\n").map(String.init))
    }

    static let foreign = ["blocked-tmp", "blocked.tmp", "tmp", "dnfv-tmp-blocked"]

    @Test func setsOfOtherProgramsSurviveRefills() throws {
        try withNamespaces(["ipsett"]) { ns throws in
            for name in Self.foreign { try ns[0].mustRun(["ipset", "create", name, "hash:ip"]); try ns[0].mustRun(["ipset", "add", name, "192.0.2.1"]) }
            let spec = { (last: UInt8) in SetSpec(type: .hashIP, family: .v4, entries: [SetEntry(address: IPAddress(family: .v4, bytes: [10, 0, 0, last])!)]) }
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                let backend = XTablesBackend()
                _ = try backend.apply(Ruleset(sets: ["blocked": spec(1)]), previous: Ruleset())
                _ = try backend.apply(Ruleset(sets: ["blocked": spec(2)]), previous: Ruleset(sets: ["blocked": spec(1)])) // a refill
                try IPSet.replace("blocked", type: .hashIP, family: .v4, entries: spec(3).entries)
            }
            #expect(try members(ns[0], "blocked") == ["10.0.0.3"])
            for name in Self.foreign { #expect(try members(ns[0], name) == ["192.0.2.1"], "\(name)") }
            #expect(try names(ns[0]) == Set(Self.foreign + ["blocked"]))
        }
    }

    @Test func aKilledRunsTemporaryIsDriftAndTheNextApplyRemovesIt() throws {
        try withNamespaces(["ipsetk"]) { ns throws in
            let desired = Ruleset(sets: ["blocked": SetSpec(type: .hashNet, family: .v4, entries: [SetEntry("10.9.0.0/16", type: .hashNet)!])])
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                #expect(try XTablesBackend().apply(desired, previous: Ruleset()).sets == ["blocked"])
            }
            // What a run killed between creating and swapping its temporaries leaves behind.
            try ns[0].mustRun(["ipset", "create", IPSet.temporaryPrefix + "1f2e3d", "hash:net"])
            try ns[0].mustRun(["ipset", "create", IPSet.temporaryPrefix + "4c5b", "hash:net", "family", "inet6"])
            try ns[0].mustRun(["ipset", "create", "user-set", "hash:ip"])
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                let backend = XTablesBackend()
                let drift = try backend.check(desired)
                let items = drift.flatMap { key, table in table.items.map { "\(key) \($0)" } }.sorted()
                #expect(items == ["ipv4/filter set \(IPSet.temporaryPrefix)1f2e3d", "ipv6/filter set \(IPSet.temporaryPrefix)4c5b"])
                #expect(drift.flatMap(\.1.items).allSatisfy { if case .unexpectedSet = $0 { return true }; return false })
                let report = try backend.apply(desired, previous: desired)
                #expect(Set(report.sets) == [IPSet.temporaryPrefix + "1f2e3d", IPSet.temporaryPrefix + "4c5b"])
                #expect(try backend.check(desired).allSatisfy { $0.1.isEmpty })
                #expect(try backend.apply(desired, previous: desired).sets.isEmpty)
            }
            #expect(try names(ns[0]) == ["blocked", "user-set"])
        }
    }
}
