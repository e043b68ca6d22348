import Foundation
import Testing
import IPTables
import NetNS
import RuleEngine
import TestSupport

/// Rules applied through libiptc must read back from `iptables-legacy-save` exactly as the golden
/// lines below, written out by hand (never produced by docknfv's renderer), say byte for byte.
@Suite("Golden: libiptc vs iptables-legacy-save", .enabled(if: TestEnv.privileged))
struct GoldenTests {
    /// (what docknfv is given, the line `iptables-legacy-save` prints for it), written out by hand.
    /// Some inputs are not in canonical form, so the lines also show what the save format adds.
    typealias Golden = (rule: String, saved: String)
    static let filter4: [Golden] = [
        ("-p tcp --dport 80 -j ACCEPT",
         "-A DNFV-FORWARD -p tcp -m tcp --dport 80 -j ACCEPT"),
        ("-s 10.1.2.3/8 -d 192.168.1.7 -i eth0 -o eth1 -p udp --sport 1000:2000 --dport 53 -j DROP",
         "-A DNFV-FORWARD -s 10.0.0.0/8 -d 192.168.1.7/32 -i eth0 -o eth1 -p udp -m udp --sport 1000:2000 --dport 53 -j DROP"),
        ("! -s 10.1.0.0/16 ! -i eth+ -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset",
         "-A DNFV-FORWARD ! -s 10.1.0.0/16 ! -i eth+ -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset"),
        ("-p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT",
         "-A DNFV-FORWARD -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT"),
        ("-p udp -m multiport ! --sports 53,123 -j RETURN", "-A DNFV-FORWARD -p udp -m multiport ! --sports 53,123 -j RETURN"),
        ("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
         "-A DNFV-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ("-m conntrack ! --ctstate INVALID,NEW -j ACCEPT", "-A DNFV-FORWARD -m conntrack ! --ctstate INVALID,NEW -j ACCEPT"),
        ("-p icmp --icmp-type echo-request -j ACCEPT",
         "-A DNFV-FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT"),
        ("-p icmp -m icmp --icmp-type 3/4 -j ACCEPT", "-A DNFV-FORWARD -p icmp -m icmp --icmp-type 3/4 -j ACCEPT"),
        ("-p icmp -m icmp --icmp-type any -j ACCEPT", "-A DNFV-FORWARD -p icmp -m icmp --icmp-type any -j ACCEPT"),
        ("-m mark --mark 0x10/0xff -j ACCEPT", "-A DNFV-FORWARD -m mark --mark 0x10/0xff -j ACCEPT"),
        ("-m mark ! --mark 0x7 -j DROP", "-A DNFV-FORWARD -m mark ! --mark 0x7 -j DROP"),
        ("-m comment --comment \"allow web traffic\" -j ACCEPT",
         "-A DNFV-FORWARD -m comment --comment \"allow web traffic\" -j ACCEPT"),
        ("-m comment --comment simple -j ACCEPT", "-A DNFV-FORWARD -m comment --comment simple -j ACCEPT"),
        ("-m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix \"dropped: \" --log-level 6",
         "-A DNFV-FORWARD -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix \"dropped: \" --log-level 6"),
        ("-m limit --limit 3/hour -j LOG", "-A DNFV-FORWARD -m limit --limit 3/hour -j LOG"),
        ("-m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.9.0.1-10.9.0.5 -j ACCEPT",
         "-A DNFV-FORWARD -m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.9.0.1-10.9.0.5 -j ACCEPT"),
        ("-j NFLOG --nflog-prefix fw --nflog-group 5 --nflog-size 128 --nflog-threshold 3",
         "-A DNFV-FORWARD -j NFLOG --nflog-prefix fw --nflog-group 5 --nflog-size 128 --nflog-threshold 3"),
        ("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu",
         "-A DNFV-FORWARD -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu"),
        ("-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400",
         "-A DNFV-FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400"),
        ("-j REJECT --reject-with icmp-port-unreachable", "-A DNFV-FORWARD -j REJECT --reject-with icmp-port-unreachable"),
        ("-j REJECT --reject-with icmp-admin-prohibited", "-A DNFV-FORWARD -j REJECT --reject-with icmp-admin-prohibited"),
        ("-p 47 -j ACCEPT", "-A DNFV-FORWARD -p gre -j ACCEPT"), // named from /etc/protocols
        ("-p gre -j ACCEPT", "-A DNFV-FORWARD -p gre -j ACCEPT"),
        ("-j MYCHAIN", "-A DNFV-FORWARD -j DNFV-MYCHAIN"),
        ("-g MYCHAIN", "-A DNFV-FORWARD -g DNFV-MYCHAIN"),
        // The user chain the jump and goto above lead to.
        ("-j RETURN", "-A DNFV-MYCHAIN -j RETURN"),
        ("-m addrtype --dst-type local --limit-iface-in -j ACCEPT", "-A DNFV-INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT"),
        ("-m addrtype --limit-iface-out ! --dst-type UNICAST ! --src-type BROADCAST,LOCAL -j DROP",
         "-A DNFV-FORWARD -m addrtype ! --src-type LOCAL,BROADCAST ! --dst-type UNICAST --limit-iface-out -j DROP"),
        ("-m addrtype --src-type XRESOLVE,THROW,NAT,UNSPEC -j RETURN", "-A DNFV-FORWARD -m addrtype --src-type UNSPEC,THROW,NAT,XRESOLVE -j RETURN"),
        ("-m owner --uid-owner 0x10 -j ACCEPT", "-A DNFV-OUTPUT -m owner --uid-owner 16 -j ACCEPT"),
        ("-m owner --gid-owner 5:9 ! --socket-exists ! --uid-owner 1000-2000 -j DROP",
         "-A DNFV-OUTPUT -m owner ! --socket-exists ! --uid-owner 1000-2000 --gid-owner 5-9 -j DROP"),
        ("-m owner --uid-owner root --gid-owner 4294967294 -j ACCEPT", "-A DNFV-OUTPUT -m owner --uid-owner 0 --gid-owner 4294967294 -j ACCEPT"),
    ]
    static let nat4: [Golden] = [
        ("-d 203.0.113.5/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
         "-A DNFV-PREROUTING -d 203.0.113.5/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80"),
        ("-p udp -m udp --dport 5000 -j DNAT --to-destination 10.0.0.5-10.0.0.9:6000-6010",
         "-A DNFV-PREROUTING -p udp -m udp --dport 5000 -j DNAT --to-destination 10.0.0.5-10.0.0.9:6000-6010"),
        ("-p tcp -j DNAT --to-destination 10.0.0.6", "-A DNFV-PREROUTING -p tcp -j DNAT --to-destination 10.0.0.6"),
        ("-s 10.0.0.0/24 -o eth0 -j MASQUERADE", "-A DNFV-POSTROUTING -s 10.0.0.0/24 -o eth0 -j MASQUERADE"),
        ("-p tcp -j MASQUERADE --to-ports 1024-2048", "-A DNFV-POSTROUTING -p tcp -j MASQUERADE --to-ports 1024-2048"),
        ("-s 10.0.1.0/24 -j SNAT --to-source 198.51.100.1", "-A DNFV-POSTROUTING -s 10.0.1.0/24 -j SNAT --to-source 198.51.100.1"),
        ("-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128",
         "-A DNFV-PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128"),
        ("-p tcp -m addrtype --dst-type LOCAL --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
         "-A DNFV-PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80"),
        ("-m owner --socket-exists -o eth0 -j MASQUERADE", "-A DNFV-POSTROUTING -o eth0 -m owner --socket-exists -j MASQUERADE"),
        ("-m addrtype --src-type LOCAL --limit-iface-out -j MASQUERADE", "-A DNFV-POSTROUTING -m addrtype --src-type LOCAL --limit-iface-out -j MASQUERADE"),
    ]
    static let mangle4: [Golden] = [
        ("-p tcp -j MARK --set-mark 1",
         "-A DNFV-FORWARD -p tcp -j MARK --set-xmark 0x1/0xffffffff"),
        ("-j MARK --set-xmark 0x10/0xf0", "-A DNFV-FORWARD -j MARK --set-xmark 0x10/0xf0"),
    ]
    static let filter6: [Golden] = [
        ("-s fd00::/64 -d 2001:db8::1 -p tcp --dport 443 -j ACCEPT",
         "-A DNFV-FORWARD -s fd00::/64 -d 2001:db8::1/128 -p tcp -m tcp --dport 443 -j ACCEPT"),
        ("-p ipv6-icmp --icmpv6-type echo-request -j ACCEPT",
         "-A DNFV-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT"),
        ("-p ipv6-icmp -m icmp6 --icmpv6-type 1/4 -j ACCEPT", "-A DNFV-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 1/4 -j ACCEPT"),
        ("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
         "-A DNFV-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ("-j REJECT --reject-with icmp6-adm-prohibited", "-A DNFV-FORWARD -j REJECT --reject-with icmp6-adm-prohibited"),
        ("-m iprange --src-range fd00::1-fd00::9 -j ACCEPT", "-A DNFV-FORWARD -m iprange --src-range fd00::1-fd00::9 -j ACCEPT"),
        ("! -s fd00::/8 ! -o eth+ -p udp -m udp ! --sport 53 -j DROP",
         "-A DNFV-FORWARD ! -s fd00::/8 ! -o eth+ -p udp -m udp ! --sport 53 -j DROP"),
        ("-p tcp -m multiport --sports 1000:2000,3000 -j ACCEPT",
         "-A DNFV-FORWARD -p tcp -m multiport --sports 1000:2000,3000 -j ACCEPT"),
        ("-m mark --mark 0x10/0xff -m comment --comment \"v6 rule\" -j RETURN",
         "-A DNFV-FORWARD -m mark --mark 0x10/0xff -m comment --comment \"v6 rule\" -j RETURN"),
        ("-m limit --limit 10/sec --limit-burst 20 -j LOG --log-prefix v6 --log-level 3",
         "-A DNFV-FORWARD -m limit --limit 10/sec --limit-burst 20 -j LOG --log-prefix v6 --log-level 3"),
        ("-j NFLOG --nflog-group 9", "-A DNFV-FORWARD -j NFLOG --nflog-group 9"),
        ("-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
         "-A DNFV-FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"),
        ("-p tcp -j REJECT --reject-with tcp-reset", "-A DNFV-FORWARD -p tcp -j REJECT --reject-with tcp-reset"),
        ("-m addrtype --dst-type unicast,LOCAL --limit-iface-in -j ACCEPT", "-A DNFV-FORWARD -m addrtype --dst-type UNICAST,LOCAL --limit-iface-in -j ACCEPT"),
        ("-m owner ! --gid-owner 100 -j REJECT", "-A DNFV-OUTPUT -m owner ! --gid-owner 100 -j REJECT --reject-with icmp6-port-unreachable"),
    ]
    static let raw4: [Golden] = [
        ("-p udp -m udp --dport 53 -j ACCEPT", "-A DNFV-PREROUTING -p udp -m udp --dport 53 -j ACCEPT"),
        ("-s 10.0.0.0/8 -j DROP", "-A DNFV-PREROUTING -s 10.0.0.0/8 -j DROP"),
    ]
    static let mangle6: [Golden] = [
        ("-p tcp -j MARK --set-xmark 0x2/0xff", "-A DNFV-FORWARD -p tcp -j MARK --set-xmark 0x2/0xff"),
    ]
    static let nat6: [Golden] = [
        ("-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80",
         "-A DNFV-PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80"),
        ("-s fd00::/64 -o eth0 -j MASQUERADE", "-A DNFV-POSTROUTING -s fd00::/64 -o eth0 -j MASQUERADE"),
        ("-j SNAT --to-source fd00::1", "-A DNFV-POSTROUTING -j SNAT --to-source fd00::1"),
    ]

    func rules(_ texts: [String], family: IPFamily) throws -> [Rule] {
        try texts.flatMap { try RuleParser(family: family).parse($0) }
    }

    func saved(_ ns: TestNamespace, _ family: IPFamily, _ table: NetfilterTable) throws -> [String] {
        try ns.mustRun([family == .v4 ? "iptables-legacy-save" : "ip6tables-legacy-save", "-t", table.rawValue])
            .split(separator: "\n").map(String.init).filter { $0.hasPrefix("-A DNFV-") }
    }

    @Test(arguments: [(IPFamily.v4, NetfilterTable.filter), (.v4, .nat), (.v4, .mangle), (.v4, .raw), (.v6, .filter), (.v6, .nat), (.v6, .mangle)])
    func savedLinesAreTheGoldenOnes(family: IPFamily, table: NetfilterTable) throws {
        let cases: [Golden] = switch (family, table) {
        case (.v4, .filter): Self.filter4
        case (.v4, .nat): Self.nat4
        case (.v4, .mangle): Self.mangle4
        case (.v4, .raw): Self.raw4
        case (.v6, .filter): Self.filter6
        case (.v6, .mangle): Self.mangle6
        default: Self.nat6
        }
        // Each rule goes into the chain its golden line names (-A DNFV-<chain> …).
        var chains: [String: [Rule]] = [:]
        for golden in cases {
            let chain = String(golden.saved.dropFirst("-A DNFV-".count).prefix { $0 != " " })
            chains[chain, default: []] += try rules([golden.rule], family: family)
        }
        let desired = TableRules(family: family, table: table, chains: chains)
        try withNamespaces(["golden"]) { ns throws in
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                #expect(try TableEngine().apply(desired))
            }
            let saved = try saved(ns[0], family, table)
            #expect(saved.count == cases.count, "\(saved)")
            for chain in chains.keys.sorted() {
                let prefix = "-A DNFV-\(chain) "
                #expect(saved.filter { $0.hasPrefix(prefix) } == cases.map(\.saved).filter { $0.hasPrefix(prefix) })
            }
        }
    }
}
