import Foundation
import Testing
import IPSet
import IPTables
import NetNS
import RuleEngine
import TestSupport

@Suite("ipset over libmnl, checked with the ipset tool", .enabled(if: TestEnv.privileged))
struct IPSetTests {
    func ipsetList(_ ns: TestNamespace, _ name: String) throws -> (header: String, members: Set<String>) {
        let out = try ns.mustRun(["ipset", "list", name])
        let parts = out.components(separatedBy: "Members:\n")
        return (parts[0], Set(parts.count > 1 ? parts[1].split(separator: "\n").map(String.init) : []))
    }

    /// hash:ip,mark where the kernel has it (Debian's does, as a module); where it does not (this
    /// CI kernel is built without CONFIG_IP_SET_HASH_IPMARK), a clear refusal and nothing created.
    @Test func ipMarkSetsOrAClearRefusal() throws {
        try withNamespaces(["ipset"]) { ns throws in
            let supported = (try? ns[0].mustRun(["ipset", "create", "probe", "hash:ip,mark"])) != nil
            let entries = ["10.1.1.1,0x5", "10.1.1.1,0x0000001f"].map { SetEntry($0, type: .hashIPMark)! }
            var failure: String?
            do {
                try NetworkNamespace.run(path: ns[0].path) { () throws in
                    try IPSet.create("dnfv-mark", type: .hashIPMark, family: .v4)
                    try IPSet.add("dnfv-mark", family: .v4, entries)
                }
            } catch { failure = "\(error)" }
            guard supported else {
                #expect(failure?.contains("does not support") == true, "\(failure ?? "created")")
                #expect(try !ns[0].mustRun(["ipset", "list", "-n"]).contains("dnfv-mark"))
                return
            }
            #expect(failure == nil)
            #expect(try ipsetList(ns[0], "dnfv-mark").members == ["10.1.1.1,0x00000005", "10.1.1.1,0x0000001f"])
            let ours = try NetworkNamespace.run(path: ns[0].path) { try IPSet.list("dnfv-mark") }
            #expect(Set(ours.entries) == Set(entries))
        }
    }

    @Test(arguments: [
        (SetType.hashNet, IPFamily.v4, ["10.0.0.0/8", "192.168.1.0/24", "203.0.113.7"]),
        (.hashIP, .v4, ["10.1.1.1", "10.1.1.2"]),
        (.hashIPPort, .v4, ["10.1.1.1,tcp:80", "10.1.1.2,udp:53"]),
        (.hashNet, .v6, ["fd00::/64", "2001:db8::/32"]),
        (.hashIP, .v6, ["fd00::1"]),
    ])
    func createAddListDeleteDestroy(type: SetType, family: IPFamily, texts: [String]) throws {
        try withNamespaces(["ipset"]) { ns throws in
            let entries = texts.map { SetEntry($0, type: type)! }
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                try IPSet.create("dnfv-test", type: type, family: family)
                try IPSet.add("dnfv-test", family: family, entries)
            }
            let listed = try ipsetList(ns[0], "dnfv-test")
            #expect(listed.header.contains("Type: \(type.rawValue)"))
            #expect(listed.header.contains("family \(family == .v4 ? "inet" : "inet6")"))
            #expect(listed.members == Set(texts), "\(listed)")
            let ours = try NetworkNamespace.run(path: ns[0].path) { try IPSet.list("dnfv-test") }
            #expect(ours.type == type.rawValue)
            #expect(Set(ours.entries) == Set(entries))
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                try IPSet.delete("dnfv-test", family: family, [entries[0]])
                try IPSet.add("dnfv-test", family: family, [entries[0]]) // again
                try IPSet.add("dnfv-test", family: family, [entries[0]]) // exists: fine with existOK
                #expect(throws: IPSetError.self) { try IPSet.add("dnfv-test", family: family, [entries[0]], existOK: false) }
                try IPSet.flush("dnfv-test")
            }
            #expect(try ipsetList(ns[0], "dnfv-test").members.isEmpty)
            try NetworkNamespace.run(path: ns[0].path) { try IPSet.destroy("dnfv-test") }
            #expect(try !ns[0].run(["ipset", "list", "dnfv-test"]).succeeded)
        }
    }

    @Test func errorsAreTranslated() throws {
        try withNamespaces(["ipset"]) { ns throws in
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                do { try IPSet.flush("nosuchset"); Issue.record("flushed a missing set") } catch let error as IPSetError {
                    #expect(error.description.contains("nosuchset"))
                    #expect(error.description.contains("does not exist"))
                }
                try IPSet.create("v4set", type: .hashNet, family: .v4)
                do { try IPSet.create("v4set", type: .hashNet, family: .v4); Issue.record("created twice") } catch let error as IPSetError {
                    #expect(error.isExist)
                }
                #expect(throws: IPSetError.self) { try IPSet.add("v4set", family: .v4, [SetEntry("fd00::/64", type: .hashNet)!]) }
                #expect(SetEntry("10.0.0.0/33", type: .hashNet) == nil)
                #expect(SetEntry("10.0.0.1,icmp:1", type: .hashIPPort) == nil)
            }
        }
    }

    @Test func setMatchAndAtomicReplaceUnderAReferencingRule() throws {
        try withNamespaces(["ipset"]) { ns throws in
            let rules = try RuleParser(family: .v4).parse("-m set --match-set blocked src -j DROP")
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                try IPSet.replace("blocked", type: .hashNet, family: .v4, entries: [SetEntry("10.9.0.0/16", type: .hashNet)!])
                try TableEngine().apply(TableRules(family: .v4, table: .filter, chains: ["INPUT": rules]))
            }
            #expect(try ns[0].mustRun(["iptables-legacy-save"]).contains("-A DNFV-INPUT -m set --match-set blocked src -j DROP"))
            // Replace the whole content while the rule uses the set.
            let many = (0..<500).map { SetEntry(address: IPAddress(family: .v4, bytes: [10, 20, UInt8($0 / 256), UInt8($0 % 256)])!) }
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                try IPSet.replace("blocked", type: .hashNet, family: .v4, entries: many)
                #expect(Set(try IPSet.list("blocked").entries) == Set(many))
                #expect(try IPSet.names() == ["blocked"]) // no temporary set left
                // Referenced by a rule: destroying it must fail and change nothing.
                #expect(throws: IPSetError.self) { try IPSet.destroy("blocked") }
            }
            #expect(try ipsetList(ns[0], "blocked").members.count == 500)
            #expect(try ns[0].mustRun(["iptables-legacy-save"]).contains("--match-set blocked src"))
        }
    }
}
