import Testing
import Rules

/// One case per class the differential test (issue 12) and the hardening review (issue 8) found.
/// Expected lines are written out as iptables-legacy-save prints them.
@Suite("Rule semantics regressions")
struct SemanticsRegressionTests {
    @Test(arguments: [
        // iptables refuses `!` with an address list (together they would match every address).
        ("! -s 10.0.0.1,10.0.0.2 -j DROP", "several addresses"),
        ("-s 10.0.0.1,10.0.0.2 ! -d 10.0.0.3 -j DROP", "several source or destination"),
        // "rule would never match".
        ("! -p all -j DROP", "never match"),
        ("! -p 0 -j DROP", "never match"),
        // Repeated options (issue 8 item 5).
        ("-s 10.0.0.1 -s 10.0.0.2 -j ACCEPT", "multiple -s"),
        ("-p tcp -p udp -j ACCEPT", "multiple -p"),
        ("-p tcp --dport 22 --dport 23 -j ACCEPT", "only be used once"),
        ("-i eth0 -i eth1 -j ACCEPT", "multiple -i"),
        ("-m comment --comment a --comment b -j ACCEPT", "only be used once"),
        ("-p tcp --syn --tcp-flags SYN SYN -j ACCEPT", "only be used once"),
        ("-p tcp -m multiport --dports 1 --sports 2 -j ACCEPT", "only be used once"),
        ("-p tcp -j DNAT --to-destination 10.0.0.1 --to-destination 10.0.0.2", "only be used once"),
        // NAT ports need a protocol with ports.
        ("-j REDIRECT --to-ports 80", "needs -p tcp"),
        ("-p udplite -j MASQUERADE --to-ports 5", "needs -p tcp"),
        ("-p tcp -j REDIRECT --to-ports 1:5", "FIRST-LAST"),
        ("-p tcp -j DNAT --to-destination 10.0.0.1 --random-fully", "unknown option"),
        // `-m state` knows no SNAT/DNAT.
        ("-m state --state SNAT -j DROP", "knows no state"),
        ("-p tcp -m multiport --dports 5:5 -j ACCEPT", "invalid port range"),
        ("-p tcp -m multiport --dports 1,,2 -j ACCEPT", "empty port"),
        ("-p icmp --icmp-type echo -j ACCEPT", "ambiguous"),
        ("-m icmp --icmp-type 8 -j ACCEPT", "needs -p icmp"),
        ("-j LOG --log-prefix \"\"", "empty"),
        ("-j LOG --log-level warn", "unknown log level"),
        ("-j NFLOG --nflog-range 5", "no effect"),
        // Issue 8 items 1 and 9: control characters anywhere, quotes in set names.
        ("-m comment --comment \"a\nb\" -j ACCEPT", "control character U+000A"),
        ("-m comment --comment \"ab\u{0}cd\" -j ACCEPT", "control character U+0000"),
        ("-m set --match-set \"q\\\"x\" src -j ACCEPT", "not a valid set name"),
        ("-j LOG --log-prefix \"a\tb\"", "control character U+0009"),
    ])
    func refused(text: String, reason: String) {
        do {
            let rules = try RuleParser(family: .v4).parse(text)
            Issue.record("accepted \(text): \(rules.map(RuleRenderer.render))")
        } catch {
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    @Test func controlCharactersInTokensAreRefused() {
        #expect(throws: RuleParseError.self) { try RuleParser().parse(tokens: ["-m", "comment", "--comment", "a\nb", "-j", "ACCEPT"]) }
        #expect(throws: RuleParseError.self) { try RuleParser().parse(tokens: ["-m", "set", "--match-set", "a\tb", "src", "-j", "ACCEPT"]) }
    }

    @Test(arguments: [
        (IPFamily.v4, "-m conntrack --ctstate SNAT,DNAT -j DROP", "-m conntrack --ctstate SNAT,DNAT -j DROP"),
        (.v4, "-s 10.9.8.7/255.0.255.0 -j ACCEPT", "-s 10.0.8.0/255.0.255.0 -j ACCEPT"),
        (.v4, "-s 10.9.8.7/255.255.0.0 -j ACCEPT", "-s 10.9.0.0/16 -j ACCEPT"),
        (.v6, "-s fd00::1/ffff::ff -j ACCEPT", "-s fd00::1/ffff::ff -j ACCEPT"),
        (.v6, "-s fd00::1/ffff:ffff:: -j ACCEPT", "-s fd00::/32 -j ACCEPT"),
        (.v4, "-m iprange --src-range 10.0.0.1 -j ACCEPT", "-m iprange --src-range 10.0.0.1-10.0.0.1 -j ACCEPT"),
        (.v4, "-p icmp --icmp-type echo-req -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
        (.v4, "-p icmp --icmp-type ECHO-REQ -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
        (.v4, "-p icmp --icmp-type host-unknown -j ACCEPT", "-p icmp -m icmp --icmp-type 3/7 -j ACCEPT"),
        (.v4, "-p icmp --icmp-type 255/3 -j ACCEPT", "-p icmp -m icmp --icmp-type any -j ACCEPT"),
        (.v6, "-p ipv6-icmp --icmpv6-type beyond -j ACCEPT", "-p ipv6-icmp -m icmp6 --icmpv6-type 1/2 -j ACCEPT"),
        (.v4, "-p tcp -j DNAT --to-destination 10.0.0.1 --random --persistent", "-p tcp -j DNAT --to-destination 10.0.0.1 --random --persistent"),
        (.v4, "-j SNAT --to-source 1.2.3.4 --persistent --random", "-j SNAT --to-source 1.2.3.4 --random --persistent"),
        (.v4, "-p tcp -j MASQUERADE --to-ports 1024-2048 --random", "-p tcp -j MASQUERADE --to-ports 1024-2048 --random"),
        (.v4, "-j MASQUERADE --random-fully", "-j MASQUERADE --random-fully"),
        (.v4, "-p tcp -j REDIRECT --random", "-p tcp -j REDIRECT --random"),
        (.v4, "-p icmp -j REDIRECT --to-ports 80", "-p icmp -j REDIRECT --to-ports 80"),
        (.v4, "-m comment --comment \"\" -j ACCEPT", "-m comment --comment \"\" -j ACCEPT"),
        (.v4, "-m mark --mark 010 -j ACCEPT", "-m mark --mark 0x8 -j ACCEPT"),
        (.v4, "-j LOG --log-level panic", "-j LOG --log-level 0"),
        (.v4, "-p tcp -m comment --comment a --dport 5 -j ACCEPT", "-p tcp -m comment --comment a -m tcp --dport 5 -j ACCEPT"),
        (.v4, "-p tcp -m multiport --dport 80 -j ACCEPT", "-p tcp -m multiport --dports 80 -j ACCEPT"),
        (.v4, "-p dccp -j ACCEPT", "-p dccp -j ACCEPT"),
    ])
    func acceptedAsIPTablesPrintsIt(family: IPFamily, text: String, saved: String) throws {
        let rules = try RuleParser(family: family).parse(text)
        #expect(rules.map(RuleRenderer.render) == [saved])
        #expect(try RuleParser(family: family).parse(saved) == rules)
    }

    @Test func conntrackBitsAreTheKernels() {
        #expect(ConntrackState.snat.bit == 64)
        #expect(ConntrackState.dnat.bit == 128)
        #expect(ConntrackState.untracked.bit == 256)
    }

    @Test(arguments: [
        (NetfilterTable.nat, "PREROUTING", "-j DROP", "DROP"),
        (.nat, "POSTROUTING", "-i eth0 -j MASQUERADE", "-i"),
        (.filter, "OUTPUT", "-i eth0 -j ACCEPT", "-i"),
        (.filter, "INPUT", "-o eth0 -j ACCEPT", "-o"),
        (.mangle, "PREROUTING", "-o eth0 -j ACCEPT", "-o"),
        (.nat, "PREROUTING", "-j MASQUERADE", "MASQUERADE"),
        (.nat, "POSTROUTING", "-j DNAT --to-destination 10.0.0.1", "DNAT"),
        (.mangle, "INPUT", "-j REJECT", "REJECT"),
        (.mangle, "PREROUTING", "-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "TCPMSS"),
        // The kernel's hooks for xt_owner and for addrtype's interface limits.
        (.filter, "INPUT", "-m owner --uid-owner 0 -j ACCEPT", "owner"),
        (.filter, "FORWARD", "-m owner --socket-exists -j ACCEPT", "owner"),
        (.nat, "PREROUTING", "-m owner --gid-owner 1 -j ACCEPT", "owner"),
        (.filter, "OUTPUT", "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", "--limit-iface-in"),
        (.nat, "POSTROUTING", "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", "--limit-iface-in"),
        (.nat, "PREROUTING", "-m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT", "--limit-iface-out"),
        (.filter, "INPUT", "-m addrtype --src-type LOCAL --limit-iface-out -j ACCEPT", "--limit-iface-out"),
    ])
    func contextRefuses(table: NetfilterTable, chain: String, text: String, token: String) throws {
        let rule = try RuleParser(family: .v4).parse(text)[0]
        do {
            try RuleContext.validate(rule, table: table, chain: chain)
            Issue.record("accepted \(text) in \(table) \(chain)")
        } catch {
            #expect(error.token == token, "\(error)")
        }
    }

    @Test(arguments: [
        (NetfilterTable.mangle, "OUTPUT", "-j MARK --set-mark 1"),
        (.raw, "PREROUTING", "-j MARK --set-mark 1"),
        (.nat, "OUTPUT", "-p tcp --syn -j TCPMSS --set-mss 1000"),
        (.filter, "FORWARD", "-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu"),
        (.nat, "INPUT", "-j SNAT --to-source 10.0.0.1"),
        (.nat, "U", "-i eth0 -j MASQUERADE"),
        (.filter, "OUTPUT", "-m owner ! --uid-owner 0 -j ACCEPT"),
        (.nat, "POSTROUTING", "-m owner --gid-owner 1 -j MASQUERADE"),
        (.mangle, "POSTROUTING", "-m owner --socket-exists -j ACCEPT"),
        (.raw, "OUTPUT", "-m owner --uid-owner 1 -j ACCEPT"),
        (.filter, "U", "-m owner --uid-owner 0 -j ACCEPT"),
        (.filter, "INPUT", "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT"),
        (.filter, "FORWARD", "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT"),
        (.filter, "FORWARD", "-m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT"),
        (.nat, "OUTPUT", "-m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT"),
        (.nat, "PREROUTING", "-m addrtype --dst-type LOCAL -j ACCEPT"),
    ])
    func contextAccepts(table: NetfilterTable, chain: String, text: String) throws {
        let rule = try RuleParser(family: .v4).parse(text)[0]
        try RuleContext.validate(rule, table: table, chain: chain)
    }

    @Test func userChainReachedFromAHook() throws {
        let rule = try RuleParser(family: .v4).parse("-j MASQUERADE")[0]
        #expect(throws: RuleContextError.self) { try RuleContext.validate(rule, table: .nat, chain: "U", builtinHooks: [.prerouting]) }
        try RuleContext.validate(rule, table: .nat, chain: "U", builtinHooks: [.postrouting])
        // Matches limited to some hooks, likewise.
        let owner = try RuleParser(family: .v4).parse("-m owner --uid-owner 0 -j ACCEPT")[0]
        #expect(throws: RuleContextError.self) { try RuleContext.validate(owner, table: .filter, chain: "U", builtinHooks: [.output, .input]) }
        try RuleContext.validate(owner, table: .filter, chain: "U", builtinHooks: [.output])
        let limited = try RuleParser(family: .v4).parse("-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT")[0]
        #expect(throws: RuleContextError.self) { try RuleContext.validate(limited, table: .filter, chain: "U", builtinHooks: [.forward, .output]) }
        try RuleContext.validate(limited, table: .filter, chain: "U", builtinHooks: [.forward, .input])
    }

    // MARK: The import reader

    static let header = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"

    @Test func importIsLiteral() throws {
        let parser = RuleParser(environment: ["HOME": "/root"])
        let file = try SaveFileReader.read(Self.header + "-A INPUT -m comment --comment \"$HOME\" -j ACCEPT\nCOMMIT\n", family: .v4, parser: parser)
        #expect(file.tables[0].rules.map { RuleRenderer.render($0.rule) } == ["-m comment --comment \"$HOME\" -j ACCEPT"])
    }

    @Test func importAcceptsCRLF() throws {
        let text = (Self.header + "-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n").replacingOccurrences("\n", with: "\r\n")
        let file = try SaveFileReader.read(text, family: .v4)
        #expect(file.tables[0].rules.map { RuleRenderer.render($0.rule) } == ["-p tcp -m tcp --dport 22 -j ACCEPT"])
    }

    @Test func importSkipsTheOtherFamilysLines() throws {
        let text = Self.header + "-6 -A INPUT -s fd00::1 -j DROP\n-4 -A INPUT -s 10.0.0.1 -j DROP\n-A INPUT -6 -s fd00::2 -j DROP\nCOMMIT\n"
        let file = try SaveFileReader.read(text, family: .v4)
        #expect(file.tables[0].rules.map { RuleRenderer.render($0.rule) } == ["-s 10.0.0.1/32 -j DROP"])
    }

    @Test func importKnowsOnlyDoubleQuotes() {
        #expect(throws: SaveFileError.self) {
            try SaveFileReader.read(Self.header + "-A INPUT -m comment --comment 'two words' -j ACCEPT\nCOMMIT\n", family: .v4)
        }
    }

    @Test func importChecksTheContext() {
        do {
            _ = try SaveFileReader.read("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DROP\nCOMMIT\n", family: .v4)
            Issue.record("DROP in nat accepted")
        } catch {
            #expect(error.line == 3)
            #expect(error.reason.contains("DROP"), "\(error)")
        }
    }

    /// Issue 8 item 15: a huge token is not echoed back in full, nor twice.
    @Test func hugeInputIsNotEchoedBack() {
        let huge = String(repeating: "x", count: 100_000)
        do { _ = try RuleParser().parse("-m set --match-set \(huge) src -j ACCEPT") } catch {
            #expect(error.description.utf8.count < 1000, "\(error.description.utf8.count) bytes")
        }
        do { _ = try SaveFileReader.read(Self.header + "-A INPUT -m set --match-set \(huge) src -j ACCEPT\nCOMMIT\n", family: .v4) } catch {
            #expect(error.description.utf8.count < 1000, "\(error.description.utf8.count) bytes")
        }
    }
}

extension String {
    func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
