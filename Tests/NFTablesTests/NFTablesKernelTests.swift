import Foundation
import Testing
import NFTables
import NetNS
import RuleEngine
import TestSupport

func rules(_ texts: [String], _ family: IPFamily = .v4) throws -> [Rule] {
    try texts.flatMap { try RuleParser(family: family).parse($0) }
}

func inside<T>(_ ns: TestNamespace, _ body: () throws -> T) throws -> T { try NetworkNamespace.run(path: ns.path, body) }

/// `nft list table` without counter values (they move with traffic) and without indentation.
func listing(_ ns: TestNamespace, _ family: String = "ip", table: String = "docknfv", handles: Bool = false) throws -> [String] {
    try ns.mustRun(["nft"] + (handles ? ["-a"] : []) + ["list", "table", family, table])
        .replacingOccurrences(of: #"counter packets \d+ bytes \d+"#, with: "counter", options: .regularExpression)
        .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

func apply(_ ns: TestNamespace, _ ruleset: Ruleset, previous: Ruleset = Ruleset()) throws -> ApplyReport {
    try inside(ns) { try NFTablesBackend().apply(ruleset, previous: previous) }
}

@Suite("nftables backend in a real namespace", .enabled(if: TestEnv.privileged), .serialized)
struct NFTablesKernelTests {
    static let filterRules = [
        "-p tcp --dport 80 -j ACCEPT", "-s 10.0.0.0/8 -j DROP", "-d 10.1.2.0/23 -i eth+ -j ACCEPT",
        "! -s 192.168.0.0/16 -p udp --sport 53 --dport 1000:2000 -j ACCEPT", "-p tcp --tcp-flags SYN,RST SYN -j DROP",
        "-p tcp ! --dport 22 -j RETURN", "-p udp ! --dport 5:10 -j DROP",
        "-p icmp --icmp-type echo-request -j ACCEPT", "-p icmp --icmp-type 3/1 -j ACCEPT", "-p icmp ! --icmp-type 3 -j ACCEPT",
        "-p tcp -m multiport --dports 22,80:90,443 -j ACCEPT", "-p udp -m multiport ! --sports 53,67 -j DROP",
        "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-m conntrack ! --ctstate INVALID -j ACCEPT", "-m conntrack --ctstate DNAT -j ACCEPT",
        "-m mark --mark 0x1/0xff -j ACCEPT", "-m mark ! --mark 0x2 -j ACCEPT", "-m comment --comment \"hello world\" -j ACCEPT",
        "-m limit --limit 3/min --limit-burst 7 -j ACCEPT", "-m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT",
        "-m iprange ! --dst-range 10.0.0.1-10.0.0.9 -j ACCEPT", "-j REJECT", "-p tcp -j REJECT --reject-with tcp-reset",
        "-j REJECT --reject-with icmp-admin-prohibited", "-j LOG --log-prefix \"x: \" --log-level 6", "-j NFLOG --nflog-group 3 --nflog-prefix y",
        "-j web", "-g web",
    ]

    static func everyTarget() throws -> Ruleset {
        Ruleset(tables: [
            TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(filterRules), "web": try rules(["-j ACCEPT"]),
                                                              "FORWARD": try rules(["-i eth0 -o veth0 -j ACCEPT"])], policies: ["FORWARD": "DROP"]),
            TableRules(family: .v4, table: .nat, chains: [
                "PREROUTING": try rules(["-p tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8080", "-p tcp --dport 81 -j DNAT --to-destination 10.0.0.1-10.0.0.3:8080-8090",
                                         "-p tcp --dport 82 -j REDIRECT --to-ports 8080", "-d 10.9.9.9 -j DNAT --to-destination 10.0.0.2"]),
                "POSTROUTING": try rules(["-o eth0 -j MASQUERADE", "-o eth1 -p tcp -j MASQUERADE --to-ports 1000-2000", "-s 10.0.0.0/8 -j SNAT --to-source 192.0.2.1"])]),
            TableRules(family: .v4, table: .mangle, chains: [
                "FORWARD": try rules(["-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu", "-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400"]),
                "PREROUTING": try rules(["-j MARK --set-mark 0x5", "-j MARK --set-xmark 0x1/0xff"])]),
            TableRules(family: .v4, table: .raw, chains: ["PREROUTING": try rules(["-p udp --dport 53 -j ACCEPT"])]),
            TableRules(family: .v6, table: .filter, chains: ["INPUT": try rules([
                "-p ipv6-icmp --icmpv6-type echo-request -j ACCEPT", "-s 2001:db8::/32 -j REJECT", "-s 2001:db8::/33 -p tcp -j REJECT --reject-with tcp-reset",
                "-d 2001:db8::1 -p udp -m multiport --dports 53,5353 -j ACCEPT"], .v6)]),
        ])
    }

    /// What `nft list` prints for every match and target, written out by hand from what
    /// `iptables-translate` says each iptables rule means.
    @Test func everyMatchAndTargetAsNftListsIt() throws {
        try withNamespaces(["nft"]) { ns throws in
            let report = try apply(ns[0], try Self.everyTarget())
            #expect(report.committed.count == 5)
            #expect(report.unchanged.isEmpty)
            #expect(try listing(ns[0]) == [
                "table ip docknfv {",
                "chain filter-FORWARD {", "type filter hook forward priority filter; policy drop;",
                "iifname \"eth0\" oifname \"veth0\" counter accept", "}",
                "chain filter-INPUT {", "type filter hook input priority filter; policy accept;",
                "tcp dport 80 counter accept",
                "ip saddr 10.0.0.0/8 counter drop",
                "ip daddr 10.1.2.0/23 iifname \"eth*\" counter accept",
                "ip saddr != 192.168.0.0/16 udp sport 53 udp dport 1000-2000 counter accept",
                "tcp flags syn / syn,rst counter drop",
                "tcp dport != 22 counter return",
                "udp dport != 5-10 counter drop",
                "icmp type echo-request counter accept",
                "icmp type destination-unreachable icmp code host-unreachable counter accept",
                "icmp type != destination-unreachable counter accept",
                "tcp dport { 22, 80-90, 443 } counter accept",
                "udp sport != { 53, 67 } counter drop",
                "ct state established,related counter accept",
                "ct state ! invalid counter accept",
                "ct status dnat counter accept",
                "meta mark & 0x000000ff == 0x00000001 counter accept",
                "meta mark != 0x00000002 counter accept",
                "counter accept comment \"hello world\"",
                "limit rate 3/minute burst 7 packets counter accept",
                "ip saddr 10.0.0.1-10.0.0.9 counter accept",
                "ip daddr != 10.0.0.1-10.0.0.9 counter accept",
                "counter reject",
                "ip protocol tcp counter reject with tcp reset",
                "counter reject with icmp admin-prohibited",
                "counter log prefix \"x: \" level info",
                "counter log prefix \"y\" group 3",
                "counter jump filter-web",
                "counter goto filter-web",
                "}",
                "chain filter-web {", "counter accept", "}",
                "chain mangle-FORWARD {", "type filter hook forward priority mangle; policy accept;",
                "tcp flags syn / syn,rst counter tcp option maxseg size set rt mtu",
                "tcp flags syn / syn,rst counter tcp option maxseg size set 1400",
                "}",
                "chain mangle-PREROUTING {", "type filter hook prerouting priority mangle; policy accept;",
                "counter meta mark set 0x00000005",
                "counter meta mark set meta mark & 0xffffff01 | 0x00000001",
                "}",
                "chain nat-POSTROUTING {", "type nat hook postrouting priority srcnat; policy accept;",
                "oifname \"eth0\" counter masquerade",
                "ip protocol tcp oifname \"eth1\" counter masquerade to :1000-2000",
                "ip saddr 10.0.0.0/8 counter snat to 192.0.2.1",
                "}",
                "chain nat-PREROUTING {", "type nat hook prerouting priority dstnat; policy accept;",
                "tcp dport 80 counter dnat to 10.0.0.1:8080",
                "tcp dport 81 counter dnat to 10.0.0.1-10.0.0.3:8080-8090",
                "tcp dport 82 counter redirect to :8080",
                "ip daddr 10.9.9.9 counter dnat to 10.0.0.2",
                "}",
                "chain raw-PREROUTING {", "type filter hook prerouting priority raw; policy accept;",
                "udp dport 53 counter accept",
                "}",
                "}",
            ])
            #expect(try listing(ns[0], "ip6") == [
                "table ip6 docknfv {",
                "chain filter-INPUT {", "type filter hook input priority filter; policy accept;",
                "icmpv6 type echo-request counter accept",
                "ip6 saddr 2001:db8::/32 counter reject",
                "meta l4proto tcp ip6 saddr 2001:db8::/33 counter reject with tcp reset",
                "ip6 daddr 2001:db8::1 udp dport { 53, 5353 } counter accept",
                "}",
                "}",
            ])
        }
    }

    @Test func applyTwiceChangesNothingAndCheckIsClean() throws {
        try withNamespaces(["nft"]) { ns throws in
            let ruleset = try Self.everyTarget()
            _ = try apply(ns[0], ruleset)
            let before = try listing(ns[0], handles: true)
            let again = try apply(ns[0], ruleset, previous: ruleset)
            #expect(again.committed.isEmpty && again.sets.isEmpty)
            #expect(try listing(ns[0], handles: true) == before)
            let drift = try inside(ns[0]) { try NFTablesBackend().check(ruleset) }
            #expect(drift.allSatisfy { $0.1.isEmpty })
        }
    }

    /// One rule added, inserted or deleted is one change: every other rule keeps its handle.
    @Test func oneRuleChangeKeepsEveryOtherRule() throws {
        try withNamespaces(["nft"]) { ns throws in
            let many = (0..<200).map { "-p tcp --dport \(10000 + $0) -j ACCEPT" }
            var ruleset = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(many)])])
            _ = try apply(ns[0], ruleset)
            func handles() throws -> [String: String] {
                var out: [String: String] = [:]
                for line in try listing(ns[0], handles: true) where line.contains("# handle") {
                    let parts = line.components(separatedBy: " # handle ")
                    out[parts[0]] = parts[1]
                }
                return out
            }
            let first = try handles()
            #expect(first.count == 202) // 200 rules, the chain and the table
            let previous = ruleset
            ruleset.tables[0].chains["FORWARD"]!.insert(contentsOf: try rules(["-p udp --dport 53 -j ACCEPT"]), at: 100)
            ruleset.tables[0].chains["FORWARD"]!.remove(at: 0)
            ruleset.tables[0].chains["FORWARD"]!.append(contentsOf: try rules(["-j DROP"]))
            _ = try apply(ns[0], ruleset, previous: previous)
            let second = try handles()
            let kept = first.filter { second[$0.key] == $0.value }
            #expect(kept.count == 201) // 199 rules, the chain and the table kept their handles
            let lines = try listing(ns[0]).filter { $0.contains("counter") }
            #expect(lines.count == 201)
            #expect(lines[0] == "tcp dport 10001 counter accept")
            #expect(lines[99] == "udp dport 53 counter accept")
            #expect(lines[100] == "tcp dport 10100 counter accept")
            #expect(lines[200] == "counter drop")
        }
    }

    /// After docknfv's own change, the next append plans against the recorded state without reading
    /// the kernel back; any commit by anyone else in between makes it read again (and repair).
    @Test func anUntouchedKernelIsNotReadBack() throws {
        try withNamespaces(["nft"]) { ns throws in
            var ruleset = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-p tcp --dport 1 -j ACCEPT"])])])
            let first = try apply(ns[0], ruleset)
            #expect(first.kernelRead)
            ruleset.kernelMark = first.kernelMark
            var next = ruleset
            next.tables[0].chains["FORWARD"]!.append(contentsOf: try rules(["-p tcp --dport 2 -j ACCEPT"]))
            let second = try apply(ns[0], next, previous: ruleset)
            #expect(!second.kernelRead)
            #expect(try listing(ns[0]).filter { $0.contains("dport") } == ["tcp dport 1 counter accept", "tcp dport 2 counter accept"])
            // Someone else commits (here: empties docknfv's chain): the mark no longer matches.
            next.kernelMark = second.kernelMark
            _ = try ns[0].mustRun(["nft", "flush", "chain", "ip", "docknfv", "filter-FORWARD"])
            var third = next
            third.tables[0].chains["FORWARD"]!.append(contentsOf: try rules(["-p tcp --dport 3 -j ACCEPT"]))
            let report = try apply(ns[0], third, previous: next)
            #expect(report.kernelRead)
            #expect(try listing(ns[0]).filter { $0.contains("dport") } == ["tcp dport 1 counter accept", "tcp dport 2 counter accept", "tcp dport 3 counter accept"])
            // A delete needs the rule's handle: with a matching mark, only that chain's handles are read.
            third.kernelMark = report.kernelMark
            var fourth = third
            fourth.tables[0].chains["FORWARD"]!.remove(at: 0)
            let deleted = try apply(ns[0], fourth, previous: third)
            #expect(!deleted.kernelRead && deleted.handlesRead == ["filter-FORWARD"])
            #expect(try listing(ns[0]).filter { $0.contains("dport") } == ["tcp dport 2 counter accept", "tcp dport 3 counter accept"])
            // So does an insert before a rule.
            fourth.kernelMark = deleted.kernelMark
            var fifth = fourth
            fifth.tables[0].chains["FORWARD"]!.insert(contentsOf: try rules(["-p tcp --dport 9 -j ACCEPT"]), at: 1)
            let inserted = try apply(ns[0], fifth, previous: fourth)
            #expect(!inserted.kernelRead && inserted.handlesRead == ["filter-FORWARD"])
            #expect(try listing(ns[0]).filter { $0.contains("dport") } == ["tcp dport 2 counter accept", "tcp dport 9 counter accept", "tcp dport 3 counter accept"])
            // Appending reads nothing.
            fifth.kernelMark = inserted.kernelMark
            var sixth = fifth
            sixth.tables[0].chains["FORWARD"]!.append(contentsOf: try rules(["-p tcp --dport 10 -j ACCEPT"]))
            let appended = try apply(ns[0], sixth, previous: fifth)
            #expect(!appended.kernelRead && appended.handlesRead.isEmpty)
        }
    }

    /// A kernel mark names its namespace by the netns cookie, which the kernel never hands out
    /// twice: a namespace made after another was deleted (which often gets the same inode
    /// number) never matches a mark of the old one, so docknfv reads the new one instead of
    /// trusting a stale mark.
    @Test func marksOfNamespacesMadeOneAfterAnotherNeverMatch() throws {
        let ruleset = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-p tcp --dport 1 -j ACCEPT"])])])
        var seen: [UInt64] = []
        for _ in 0..<12 {
            let mark = try withNamespaces(["nftmark"]) { ns throws in try inside(ns[0]) { try NFTablesBackend().apply(ruleset, previous: Ruleset()) }.kernelMark }
            seen.append(try #require(mark).namespace)
        }
        #expect(Set(seen).count == seen.count, "\(seen)")
    }

    /// A daemon's session keeps one socket per namespace: changes made through it land in the
    /// namespace of the thread making them, and a failed change drops the socket.
    @Test func aSessionWritesWhereItsCallerIs() throws {
        try withNamespaces(["nfta", "nftb"]) { ns throws in
            let backend = NFTablesBackend(session: NFTablesSession())
            let one = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-p tcp --dport 1 -j ACCEPT"])])])
            let two = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-p tcp --dport 2 -j ACCEPT"])])])
            var first = one
            first.kernelMark = try inside(ns[0]) { try backend.apply(one, previous: Ruleset()) }.kernelMark
            _ = try inside(ns[1]) { try backend.apply(two, previous: Ruleset()) }
            #expect(try listing(ns[0]).contains("tcp dport 1 counter accept") && !listing(ns[0]).contains("tcp dport 2 counter accept"))
            #expect(try listing(ns[1]).contains("tcp dport 2 counter accept") && !listing(ns[1]).contains("tcp dport 1 counter accept"))
            // Back in the first namespace: removal through the session empties it.
            #expect(try inside(ns[0]) { try backend.remove(first) })
            #expect(try ns[0].mustRun(["nft", "list", "tables"]).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
            // A batch the kernel refuses (a jump loop) fails and the next change still works.
            let loop = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-j a"]), "a": try rules(["-j b"]), "b": try rules(["-j a"])])])
            #expect(throws: EngineError.self) { try inside(ns[0]) { try backend.apply(loop, previous: Ruleset()) } }
            _ = try inside(ns[0]) { try backend.apply(one, previous: Ruleset()) }
            #expect(try listing(ns[0]).contains("tcp dport 1 counter accept"))
        }
    }

    /// A batch planned from a read that someone else's commit made stale is refused by the kernel
    /// (the batch carries the generation it was planned against) and planned again from a new read.
    @Test func aBatchPlannedFromAStaleReadIsReplanned() throws {
        try withNamespaces(["nft"]) { ns throws in
            let first = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": try rules(["-p tcp --dport 1 -j ACCEPT"])])])
            _ = try apply(ns[0], first)
            let attempts = Attempts()
            var backend = NFTablesBackend()
            let path = ns[0].name
            backend.beforeCommit = { attempt in
                attempts.record(attempt)
                // The first time: another program empties docknfv's chain after docknfv read it.
                if attempt == 0 { _ = try? mustRun(["nsenter", "--net=/run/netns/\(path)", "nft", "flush", "chain", "ip", "docknfv", "filter-FORWARD"]) }
            }
            var second = first
            second.tables[0].chains["FORWARD"]!.append(contentsOf: try rules(["-p tcp --dport 2 -j ACCEPT"]))
            _ = try inside(ns[0]) { try backend.apply(second, previous: first) }
            #expect(attempts.values == [0, 1])
            // Planned again from what the kernel then held: both rules, not just the appended one.
            #expect(try listing(ns[0]).filter { $0.contains("dport") } == ["tcp dport 1 counter accept", "tcp dport 2 counter accept"])
        }
    }

    @Test func setsAreNftSetsUpdatedElementByElement() throws {
        try withNamespaces(["nft"]) { ns throws in
            func entries(_ texts: [String], _ type: SetType) -> [SetEntry] { texts.map { SetEntry($0, type: type)! } }
            var ruleset = Ruleset(
                tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules([
                    "-m set --match-set nets src -j DROP", "-m set ! --match-set hosts dst -j ACCEPT", "-m set --match-set services dst,dst -j ACCEPT",
                    "-p tcp --dport 8080 -m set --match-set tagged dst,dst -j ACCEPT"])])],
                sets: ["nets": SetSpec(type: .hashNet, family: .v4, entries: entries(["10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24", "192.168.2.0/24"], .hashNet)),
                       "hosts": SetSpec(type: .hashIP, family: .v4, entries: entries(["10.0.0.1", "10.0.0.2"], .hashIP)),
                       "services": SetSpec(type: .hashIPPort, family: .v4, entries: entries(["10.0.0.1,tcp:80", "10.0.0.2,udp:53"], .hashIPPort)),
                       "tagged": SetSpec(type: .hashIPMark, family: .v4, entries: entries(["10.0.0.1,0x5", "10.0.0.1,0x1f"], .hashIPMark))])
            _ = try apply(ns[0], ruleset)
            let listed = try listing(ns[0])
            #expect(listed.contains("ip saddr @nets counter drop"))
            #expect(listed.contains("ip daddr != @hosts counter accept"))
            #expect(listed.contains("ip daddr . meta l4proto . tcp dport @services counter accept") || listed.contains("ip daddr . meta l4proto . th dport @services counter accept"))
            #expect(try ns[0].mustRun(["nft", "list", "set", "ip", "docknfv", "nets"]).contains("elements = { 10.0.0.0/8, 192.168.1.0-192.168.2.255 }"))
            #expect(try ns[0].mustRun(["nft", "list", "set", "ip", "docknfv", "services"]).contains("10.0.0.1 . tcp . 80"))
            #expect(listed.contains("tcp dport 8080 ip daddr . meta mark @tagged counter accept"))
            let tagged = try ns[0].mustRun(["nft", "list", "set", "ip", "docknfv", "tagged"])
            #expect(tagged.contains("type ipv4_addr . mark"), "\(tagged)")
            #expect(tagged.contains("10.0.0.1 . 0x00000005") && tagged.contains("10.0.0.1 . 0x0000001f"), "\(tagged)")
            let previous = ruleset
            ruleset.sets["nets"]!.entries = entries(["10.0.0.0/8", "172.16.0.0/12"], .hashNet)
            ruleset.sets["hosts"]!.entries.append(SetEntry("10.0.0.3", type: .hashIP)!)
            ruleset.sets["tagged"]!.entries = entries(["10.0.0.1,0x5", "10.0.0.2,0x1f"], .hashIPMark)
            let report = try apply(ns[0], ruleset, previous: previous)
            #expect(report.sets == ["hosts", "nets", "tagged"])
            #expect(report.committed.isEmpty)
            #expect(try ns[0].mustRun(["nft", "list", "set", "ip", "docknfv", "nets"]).contains("elements = { 10.0.0.0/8, 172.16.0.0/12 }"))
            let hosts = try ns[0].mustRun(["nft", "list", "set", "ip", "docknfv", "hosts"])
            for host in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] { #expect(hosts.contains(host), "\(hosts)") }
            let retagged = try ns[0].mustRun(["nft", "list", "set", "ip", "docknfv", "tagged"])
            #expect(retagged.contains("10.0.0.2 . 0x0000001f") && !retagged.contains("10.0.0.1 . 0x0000001f"), "\(retagged)")
            #expect(try inside(ns[0]) { try NFTablesBackend().check(ruleset) }.allSatisfy { $0.1.isEmpty })
        }
    }

    @Test func foreignTablesAreNeverTouchedAndRemoveLeavesNothing() throws {
        try withNamespaces(["nft"]) { ns throws in
            _ = try ns[0].mustRun(["nft", "add table inet foreign; add chain inet foreign input { type filter hook input priority 0; }; add rule inet foreign input tcp dport 22 accept"])
            let foreign = try listing(ns[0], "inet", table: "foreign")
            let ruleset = try Self.everyTarget()
            _ = try apply(ns[0], ruleset)
            #expect(try listing(ns[0], "inet", table: "foreign") == foreign)
            #expect(try inside(ns[0]) { try NFTablesBackend().remove(ruleset) })
            #expect(try listing(ns[0], "inet", table: "foreign") == foreign)
            let tables = try ns[0].mustRun(["nft", "list", "tables"])
            #expect(tables.trimmingCharacters(in: .whitespacesAndNewlines) == "table inet foreign")
            #expect(try !inside(ns[0]) { try NFTablesBackend().remove(ruleset) })
        }
    }

    @Test func aBatchTheKernelRefusesChangesNothing() throws {
        try withNamespaces(["nft"]) { ns throws in
            let good = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-j ACCEPT"])])])
            _ = try apply(ns[0], good)
            let before = try listing(ns[0], handles: true)
            // A jump loop passes every check docknfv makes; the kernel refuses it (ELOOP).
            let loop = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: [
                "INPUT": try rules(["-j DROP", "-j a"]), "a": try rules(["-j b"]), "b": try rules(["-j a"])])])
            #expect { try apply(ns[0], loop, previous: good) } throws: { error in
                guard let error = error as? EngineError else { return false }
                return error.code == .kernel && error.message.contains("nothing was changed")
            }
            #expect(try listing(ns[0], handles: true) == before)
        }
    }

    @Test func whatNftablesCannotExpressIsRefusedByName() throws {
        let ruleset = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-p tcp -m multiport --ports 22,80 -j ACCEPT"])])])
        #expect { try NFTablesBackend().validate(ruleset) } throws: { error in
            (error as? EngineError)?.code == .unsupported && "\(error)".contains("--ports")
        }
        let foreignSet = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(["-m set --match-set nosuch src -j DROP"])])])
        #expect { try NFTablesBackend().validate(foreignSet) } throws: { error in "\(error)".contains("nosuch") }
    }
}

/// Attempts seen by a `beforeCommit` hook.
final class Attempts: @unchecked Sendable { // written by one thread at a time (the backend's)
    private(set) var values: [Int] = []
    func record(_ attempt: Int) { values.append(attempt) }
}
