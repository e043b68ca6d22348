import Foundation
import Testing
import TestSupport
import Rules

/// Issue 8: random bytes and random token sequences fed to the rule parser and the import reader.
/// Every input is refused with an error, or accepted and then rendered, re-parsed and rendered
/// identically. Seeded (`DOCKNFV_FUZZ_SEED`, printed), bounded in count.
@Suite("Rule parser fuzz")
struct ParserFuzzTests {

    static let words = ["-p", "tcp", "udp", "icmp", "ipv6-icmp", "!", "-s", "-d", "10.0.0.1", "10.0.0.0/8", "fd00::1", "1.2.3.4/255.0.255.0",
                        "10.0.0.1,10.0.0.2", "-i", "-o", "eth0", "eth+", "-m", "tcp", "multiport", "conntrack", "state", "mark", "set",
                        "comment", "limit", "iprange", "--dport", "--sport", "--dports", "80", "1:2", "65535", "--syn", "--tcp-flags",
                        "SYN,RST", "SYN", "--ctstate", "--state", "NEW,SNAT", "--mark", "0x10/0xff", "--match-set", "s1", "src,dst",
                        "--comment", "\"a b\"", "\"\"", "'q'", "--limit", "5/min", "--limit-burst", "3", "--src-range", "10.0.0.1-10.0.0.5",
                        "--icmp-type", "echo-req", "any", "-j", "-g", "ACCEPT", "DROP", "RETURN", "REJECT", "--reject-with", "tcp-reset",
                        "LOG", "--log-prefix", "p:", "--log-level", "6", "NFLOG", "--nflog-group", "2", "DNAT", "SNAT", "--to-destination",
                        "--to-source", "10.0.0.5:80", "[fd00::5]:80", "MASQUERADE", "REDIRECT", "--to-ports", "1000-2000", "--random",
                        "--persistent", "MARK", "--set-mark", "TCPMSS", "--clamp-mss-to-pmtu", "CHAIN", "-4", "-6", "$HOME", "\\", "\"", "\u{0}", "\n", "\r",
                        "addrtype", "--src-type", "--dst-type", "LOCAL,BROADCAST", "un", "--limit-iface-in", "--limit-iface-out",
                        "owner", "--uid-owner", "--gid-owner", "--socket-exists", "0x10", "5:9", "root"]

    func check(_ text: String, family: IPFamily?, restore: Bool) {
        let rules: [Rule]
        if restore {
            let header = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:CHAIN - [0:0]\n"
            guard let file = try? SaveFileReader.read(header + "-A FORWARD " + text + "\nCOMMIT\n", family: family ?? .v4) else { return }
            rules = file.tables.flatMap { $0.rules.map(\.rule) }
        } else {
            guard let parsed = try? RuleParser(family: family).parse(text) else { return }
            rules = parsed
        }
        for rule in rules {
            let rendered = RuleRenderer.render(rule)
            do {
                let again = try RuleParser(family: rule.family).parse(rendered)
                #expect(again == [rule], "\(text) → \(rendered)")
                #expect(again.map(RuleRenderer.render) == [rendered], "\(text) → \(rendered)")
                let file = "*filter\n:FORWARD ACCEPT [0:0]\n:CHAIN - [0:0]\n-A FORWARD \(rendered)\nCOMMIT\n"
                let imported = try SaveFileReader.read(file, family: rule.family).tables[0].rules.map(\.rule)
                #expect(imported == [rule], "import of \(rendered)")
            } catch {
                Issue.record("accepted \(text.debugDescription), rendered \(rendered.debugDescription), then refused: \(error)")
            }
        }
    }

    @Test func randomTokensAndBytes() {
        let seed = ProcessInfo.processInfo.environment["DOCKNFV_FUZZ_SEED"].flatMap { UInt64($0) } ?? 8_2024
        print("parser fuzz: DOCKNFV_FUZZ_SEED=\(seed)")
        var rng = SeededGenerator(seed: seed)
        for round in 0..<20_000 {
            let text: String
            if round % 4 == 0 {
                let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                text = String(decoding: bytes, as: UTF8.self)
            } else {
                text = (0..<Int.random(in: 1...14, using: &rng)).map { _ in Self.words.randomElement(using: &rng)! }.joined(separator: " ")
            }
            let family: IPFamily? = [nil, .v4, .v6].randomElement(using: &rng)!
            check(text, family: family, restore: round % 2 == 1)
        }
    }
}
