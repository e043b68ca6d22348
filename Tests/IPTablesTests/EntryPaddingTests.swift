import Foundation
import Testing
import IPTables
import NetNS
import RuleEngine
import TestSupport

/// Issue 8 item 4: the kernel stores a match's or target's payload byte for byte, padding
/// included. Payloads built from Swift values of C structs carried stack garbage in their padding
/// (`xt_udp`, `xt_mark_mtinfo1`, `nf_nat_range2`…), so the same rule built at `rule add` and again
/// at `diff` compared unequal: false drift, and needless commits. These tests build the same rules
/// from stacks filled with different garbage and require one answer.
@Suite("x_tables entries are deterministic (issue 8 item 4)", .enabled(if: TestEnv.privileged), .serialized)
struct EntryPaddingTests {
    /// Rules whose kernel structs have padding, in a chain mixed with rules whose structs have none.
    static let filter = [
        "-p udp --dport 53 -j ACCEPT", "-p udp -m udp --sport 53:54 -j ACCEPT",
        "-m mark --mark 0x1/0xff -j ACCEPT", "-m mark ! --mark 0x2 -j DROP",
        "-p tcp --dport 80 -j ACCEPT", "-m iprange --src-range 10.0.0.1-10.0.0.9 -j LOG --log-prefix x",
        "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-p icmp --icmp-type echo-request -m limit --limit 5/sec -j ACCEPT",
        "-p udp -m multiport --dports 1,2,5:9 -j REJECT", "-j NFLOG --nflog-group 3 --nflog-prefix p",
    ]
    static let nat = [
        "-p tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8080", "-p udp --dport 53 -j DNAT --to-destination 10.0.0.2",
    ]
    static let natOut = ["-s 10.0.0.0/8 -j SNAT --to-source 1.2.3.4", "-o eth0 -p udp -j MASQUERADE --to-ports 1000-2000"]
    static let mangle = ["-p udp -j MARK --set-mark 5", "-p tcp --syn -j TCPMSS --set-mss 1400"]

    func rules(_ texts: [String], _ family: IPFamily = .v4) throws -> [Rule] {
        try texts.flatMap { try RuleParser(family: family).parse($0) }
    }

    /// Fills `depth` stack frames with `pattern`, then runs `body` from the deepest one, so that
    /// whatever `body` leaves uninitialised on the stack reads as `pattern`.
    @inline(never)
    func onDirtyStack<T>(_ pattern: UInt8, depth: Int = 8, _ body: () throws -> T) rethrows -> T {
        var junk: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                   UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &junk) { $0.initializeMemory(as: UInt8.self, repeating: pattern) }
        defer { withExtendedLifetime(junk) {} }
        if depth > 0 { return try onDirtyStack(pattern, depth: depth - 1, body) }
        // Also dirty the frames `body` is about to use, then release them.
        scribble(pattern, 64)
        return try body()
    }

    @inline(never)
    func scribble(_ pattern: UInt8, _ frames: Int) {
        var junk: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &junk) { $0.initializeMemory(as: UInt8.self, repeating: pattern) }
        withExtendedLifetime(junk) { if frames > 0 { scribble(pattern, frames - 1) } }
    }

    @Test func theSameRulesBuiltFromDifferentStacksAreInSync() throws {
        try withNamespaces(["pad"]) { ns throws in
            let tables = [
                TableRules(family: .v4, table: .filter, chains: ["INPUT": try rules(Self.filter), "FORWARD": try rules(Self.filter.reversed())]),
                TableRules(family: .v6, table: .filter, chains: ["INPUT": try rules(["-p udp --dport 53 -j ACCEPT", "-m mark --mark 3 -j ACCEPT", "-p tcp -j ACCEPT"], .v6)]),
                TableRules(family: .v4, table: .nat, chains: ["PREROUTING": try rules(Self.nat), "POSTROUTING": try rules(Self.natOut)]),
                TableRules(family: .v6, table: .nat, chains: ["POSTROUTING": try rules(["-o eth0 -j MASQUERADE", "-s fd00::/8 -j SNAT --to-source fd00::1"], .v6)]),
                TableRules(family: .v4, table: .mangle, chains: ["PREROUTING": try rules(Self.mangle), "FORWARD": try rules(["-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu"])]),
            ]
            for desired in tables {
                #expect(try NetworkNamespace.run(path: ns[0].path) { try onDirtyStack(0xA5) { try TableEngine().apply(desired) } },
                        "first apply of \(desired.key) commits")
                for pattern: UInt8 in [0x00, 0x5A, 0xFF] {
                    let drift = try NetworkNamespace.run(path: ns[0].path) { try onDirtyStack(pattern) { try TableEngine().check(desired) } }
                    #expect(drift.isEmpty, "\(desired.key) after building on a stack of \(pattern): \(drift.items)")
                    let committed = try NetworkNamespace.run(path: ns[0].path) { try onDirtyStack(pattern) { try TableEngine().apply(desired) } }
                    #expect(!committed, "\(desired.key): apply of an unchanged ruleset committed again (stack \(pattern))")
                }
            }
        }
    }
}
