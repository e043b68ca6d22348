import Foundation
import Testing
import IPTables
import NetNS
import RuleEngine
import TestSupport

/// Rules applied through libiptc must read back from `iptables-legacy-save` exactly as docknfv
/// renders them: the kernel oracle and the renderer agree byte for byte.
@Suite("Golden: libiptc vs iptables-legacy-save", .enabled(if: TestEnv.privileged))
struct GoldenTests {
    static let filter4 = [
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "-s 10.0.0.0/8 -d 192.168.1.7/32 -i eth0 -o eth1 -p udp -m udp --sport 1000:2000 --dport 53 -j DROP",
        "! -s 10.1.0.0/16 ! -i eth+ -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset",
        "-p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT",
        "-p udp -m multiport ! --sports 53,123 -j RETURN",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack ! --ctstate INVALID,NEW -j ACCEPT",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-p icmp -m icmp --icmp-type 3/4 -j ACCEPT",
        "-p icmp -m icmp --icmp-type any -j ACCEPT",
        "-m mark --mark 0x10/0xff -j ACCEPT",
        "-m mark ! --mark 0x7 -j DROP",
        "-m comment --comment \"allow web traffic\" -j ACCEPT",
        "-m comment --comment simple -j ACCEPT",
        "-m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix \"dropped: \" --log-level 6",
        "-m limit --limit 3/hour -j LOG",
        "-m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.9.0.1-10.9.0.5 -j ACCEPT",
        "-j NFLOG --nflog-prefix fw --nflog-group 5 --nflog-size 128 --nflog-threshold 3",
        "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400",
        "-j REJECT --reject-with icmp-port-unreachable",
        "-j REJECT --reject-with icmp-admin-prohibited",
        "-p 47 -j ACCEPT",
        "-p gre -j ACCEPT",
        "-j MYCHAIN",
        "-g MYCHAIN",
    ]
    static let nat4 = [
        "-d 203.0.113.5/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
        "-p udp -m udp --dport 5000 -j DNAT --to-destination 10.0.0.5-10.0.0.9:6000-6010",
        "-p tcp -j DNAT --to-destination 10.0.0.6",
        "-s 10.0.0.0/24 -o eth0 -j MASQUERADE",
        "-p tcp -j MASQUERADE --to-ports 1024-2048",
        "-s 10.0.1.0/24 -j SNAT --to-source 198.51.100.1",
        "-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128",
    ]
    static let mangle4 = ["-p tcp -j MARK --set-xmark 0x1/0xffffffff", "-j MARK --set-xmark 0x10/0xf0"]
    static let filter6 = [
        "-s fd00::/64 -d 2001:db8::1/128 -p tcp -m tcp --dport 443 -j ACCEPT",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 1/4 -j ACCEPT",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-j REJECT --reject-with icmp6-adm-prohibited",
        "-m iprange --src-range fd00::1-fd00::9 -j ACCEPT",
        "! -s fd00::/8 ! -o eth+ -p udp -m udp ! --sport 53 -j DROP",
        "-p tcp -m multiport --sports 1000:2000,3000 -j ACCEPT",
        "-m mark --mark 0x10/0xff -m comment --comment \"v6 rule\" -j RETURN",
        "-m limit --limit 10/sec --limit-burst 20 -j LOG --log-prefix v6 --log-level 3",
        "-j NFLOG --nflog-group 9",
        "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-p tcp -j REJECT --reject-with tcp-reset",
    ]
    static let raw4 = ["-p udp -m udp --dport 53 -j ACCEPT", "-s 10.0.0.0/8 -j DROP"]
    static let mangle6 = ["-p tcp -j MARK --set-xmark 0x2/0xff"]
    static let nat6 = [
        "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80",
        "-s fd00::/64 -o eth0 -j MASQUERADE",
        "-j SNAT --to-source fd00::1",
    ]

    func rules(_ texts: [String], family: IPFamily) throws -> [Rule] {
        try texts.flatMap { try RuleParser(family: family).parse($0) }
    }

    func saved(_ ns: TestNamespace, _ family: IPFamily, _ table: NetfilterTable) throws -> [String] {
        try ns.mustRun([family == .v4 ? "iptables-legacy-save" : "ip6tables-legacy-save", "-t", table.rawValue])
            .split(separator: "\n").map(String.init).filter { $0.hasPrefix("-A DNFV-") }
    }

    @Test(arguments: [(IPFamily.v4, NetfilterTable.filter), (.v4, .nat), (.v4, .mangle), (.v4, .raw), (.v6, .filter), (.v6, .nat), (.v6, .mangle)])
    func renderedEqualsKernel(family: IPFamily, table: NetfilterTable) throws {
        let texts: [String] = switch (family, table) {
        case (.v4, .filter): Self.filter4
        case (.v4, .nat): Self.nat4
        case (.v4, .mangle): Self.mangle4
        case (.v4, .raw): Self.raw4
        case (.v6, .filter): Self.filter6
        case (.v6, .mangle): Self.mangle6
        default: Self.nat6
        }
        // Source NAT belongs in POSTROUTING, destination NAT in PREROUTING.
        var chains: [String: [String]] = [:]
        for text in texts {
            let chain = table == .raw ? "PREROUTING" : table != .nat ? "FORWARD"
                : (text.contains("SNAT") || text.contains("MASQUERADE")) ? "POSTROUTING" : "PREROUTING"
            chains[chain, default: []].append(text)
        }
        var desired = TableRules(family: family, table: table, chains: try chains.mapValues { try rules($0, family: family) })
        if table == .filter && family == .v4 { desired.chains["MYCHAIN"] = try rules(["-j RETURN"], family: family) }
        try withNamespaces(["golden"]) { ns throws in
            try NetworkNamespace.run(path: ns[0].path) { () throws in
                #expect(try TableEngine().apply(desired))
            }
            let saved = try saved(ns[0], family, table)
            for (chain, rules) in desired.chains {
                let lines = saved.filter { $0.hasPrefix("-A DNFV-\(chain) ") }
                let expected = rules.map { "-A DNFV-\(chain) " + RuleRenderer.render($0).replacingOccurrences(of: "-j MYCHAIN", with: "-j DNFV-MYCHAIN").replacingOccurrences(of: "-g MYCHAIN", with: "-g DNFV-MYCHAIN") }
                #expect(lines.count == expected.count)
                for (got, want) in zip(lines, expected) { #expect(got == want) }
            }
        }
    }
}
