import Foundation
import Testing
import TestSupport
import Rules

@Suite("Rule text: parse and render")
struct RuleParserTests {
    /// iptables-save lines must come back exactly as they were.
    static let canonical4 = [
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "-s 10.0.0.0/8 -d 192.168.1.7/32 -i eth0 -o eth1 -p udp -m udp --sport 1000:2000 --dport 53 -j DROP",
        "! -s 10.1.0.0/16 ! -i eth+ -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset",
        "-p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT",
        "-m conntrack ! --ctstate INVALID,NEW -j ACCEPT",
        "-p icmp -m icmp --icmp-type 3/4 -j ACCEPT",
        "-p icmp -m icmp --icmp-type any -j ACCEPT",
        "-m mark --mark 0x10/0xff -j ACCEPT",
        "-m set --match-set allowed src,dst -j ACCEPT",
        "-m set ! --match-set blocked dst -j DROP",
        "-m comment --comment \"allow web traffic\" -j ACCEPT",
        "-m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix \"dropped: \" --log-level 6",
        "-m iprange --src-range 10.0.0.1-10.0.0.9 ! --dst-range 10.9.0.1-10.9.0.5 -j ACCEPT",
        "-j NFLOG --nflog-prefix fw --nflog-group 5 --nflog-size 128 --nflog-threshold 3",
        "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-d 203.0.113.5/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
        "-p udp -m udp --dport 5000 -j DNAT --to-destination 10.0.0.5-10.0.0.9:6000-6010",
        "-s 10.0.0.0/24 -o eth0 -j MASQUERADE",
        "-p tcp -j MASQUERADE --to-ports 1024-2048",
        "-s 10.0.1.0/24 -j SNAT --to-source 198.51.100.1",
        "-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128",
        "-j MARK --set-xmark 0x10/0xf0",
        "-j MYCHAIN", "-g MYCHAIN", "-j RETURN",
        "-m addrtype --dst-type LOCAL -j ACCEPT",
        "-m addrtype ! --src-type LOCAL,BROADCAST ! --dst-type UNSPEC --limit-iface-in -j ACCEPT",
        "-m addrtype --src-type UNSPEC,THROW,NAT,XRESOLVE --limit-iface-out -j ACCEPT",
        "-p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
        "-m owner --uid-owner 16 -j ACCEPT",
        "-m owner ! --socket-exists ! --uid-owner 5-9 --gid-owner 0 -j ACCEPT",
        "-m owner --gid-owner 4294967294 -j ACCEPT",
        "-m owner --socket-exists -j DROP",
    ]
    static let canonical6 = [
        "-s fd00::/64 -d 2001:db8::1/128 -p tcp -m tcp --dport 443 -j ACCEPT",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 1/4 -j ACCEPT",
        "-j REJECT --reject-with icmp6-adm-prohibited",
        "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80",
        "-j SNAT --to-source fd00::1",
        "-m addrtype --dst-type UNSPEC,UNICAST,LOCAL,ANYCAST,MULTICAST,UNREACHABLE -j ACCEPT",
        "-m owner ! --uid-owner 1000-2000 -j REJECT --reject-with icmp6-port-unreachable",
    ]

    @Test(arguments: canonical4)
    func canonicalIPv4RoundTrips(text: String) throws {
        let rules = try RuleParser(family: .v4).parse(text)
        #expect(rules.count == 1)
        #expect(RuleRenderer.render(rules[0]) == text)
        #expect(try RuleParser(family: .v4).parse(RuleRenderer.render(rules[0])) == rules)
    }

    @Test(arguments: canonical6)
    func canonicalIPv6RoundTrips(text: String) throws {
        let rules = try RuleParser(family: .v6).parse(text)
        #expect(RuleRenderer.render(rules[0]) == text)
    }

    /// Operator shorthand is accepted and rendered canonically.
    @Test(arguments: [
        ("-p tcp --dport 80 -j ACCEPT", "-p tcp -m tcp --dport 80 -j ACCEPT"),
        ("-p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT", "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ("-s 10.1.2.3 -j DROP", "-s 10.1.2.3/32 -j DROP"),
        ("-s 10.1.2.3/255.255.0.0 -j DROP", "-s 10.1.0.0/16 -j DROP"),
        ("-p tcp ! --dport 22 -j DROP", "-p tcp -m tcp ! --dport 22 -j DROP"),
        ("-p tcp --dport ! 22 -j DROP", "-p tcp -m tcp ! --dport 22 -j DROP"),
        ("-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu"),
        ("-p icmp --icmp-type echo-request -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
        ("-p tcp --dport https -j ACCEPT", "-p tcp -m tcp --dport 443 -j ACCEPT"),
        ("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable"),
        ("-j MARK --set-mark 0x1", "-j MARK --set-xmark 0x1/0xffffffff"),
        ("-m limit --limit 10/second -j ACCEPT", "-m limit --limit 10/sec -j ACCEPT"),
        ("-p tcp -j DNAT --to-destination 10.0.0.1:8080", "-p tcp -j DNAT --to-destination 10.0.0.1:8080"),
        ("--protocol udp --destination-port 53 --jump ACCEPT", "-p udp -m udp --dport 53 -j ACCEPT"),
    ])
    func shorthand(input: String, canonical: String) throws {
        let rules = try RuleParser().parse(input)
        #expect(RuleRenderer.render(rules[0]) == canonical)
    }

    @Test func familyIsInferred() throws {
        #expect(try RuleParser().parse("-s fd00::/8 -j ACCEPT")[0].family == .v6)
        #expect(try RuleParser().parse("-p ipv6-icmp -j ACCEPT")[0].family == .v6)
        #expect(try RuleParser().parse("-j ACCEPT")[0].family == .v4)
    }

    /// Every bad input names the token and the rule.
    @Test(arguments: [
        ("-p tcp --dportx 80 -j ACCEPT", IPFamily?.none, "--dportx", "unknown option"),
        ("-s 10.0.0.300/8 -j DROP", nil, "10.0.0.300/8", "not a valid address or CIDR"),
        ("-s 10.0.0.0/33 -j DROP", nil, "10.0.0.0/33", "not a valid address or CIDR"),
        ("-p tcp --dport 70000 -j ACCEPT", nil, "70000", "not a valid port"),
        ("-p tcp --dport 90:80 -j ACCEPT", nil, "90:80", "reversed"),
        ("-p icmp --icmp-type bogus -j ACCEPT", nil, "bogus", "unknown ICMP type"),
        ("-p tcp -j bad/chain", nil, "bad/chain", "not a valid target or chain name"),
        ("-s fd00::/8 -j ACCEPT", .v4, "fd00::/8", "does not fit an ipv4 rule"),
        ("-p icmp -j ACCEPT", .v6, "icmp", "does not fit an IPv6 rule"),
        ("-m conntrack --ctstate NEWISH -j ACCEPT", nil, "NEWISH", "unknown conntrack state"),
        ("-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT", nil, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "too many ports"),
        ("-m frobnicate -j ACCEPT", nil, "frobnicate", "unsupported match module"),
        ("-j REJECT --reject-with icmp6-no-route", .v4, "icmp6-no-route", "unknown reject type"),
        ("-p tcp --dport 80", nil, nil, "no target"),
        ("-j DNAT", nil, "DNAT", "needs --to-destination"),
        ("-p tcp -j TCPMSS --clamp-mss-to-pmtu", nil, nil, "TCPMSS needs"),
        ("-j ACCEPT -j DROP", nil, "-j", "one target"),
        ("-m comment --comment 'unterminated -j ACCEPT", nil, nil, "unterminated quote"),
        ("-m multiport --dports 80 -j ACCEPT", nil, "multiport", "needs -p tcp"),
        ("-j DNAT --to-destination 10.0.0.1:80", nil, "10.0.0.1:80", "needs -p tcp"),
        ("! ! -s 10.0.0.1 -j ACCEPT", nil, "!", "double negation"),
        ("-p udp -j REJECT --reject-with tcp-reset", nil, nil, "tcp-reset needs -p tcp"),
    ])
    func badInput(text: String, family: IPFamily?, token: String?, reason: String) {
        do {
            let rules = try RuleParser(family: family).parse(text)
            Issue.record("accepted \(text): \(rules)")
        } catch {
            #expect(error.token == token, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
            #expect(error.description.contains("rule \"\(text)\""))
        }
    }

    @Test func environmentExpansion() throws {
        let parser = RuleParser(environment: ["NET": "10.5.0.0/16", "PORT": "8443"])
        #expect(RuleRenderer.render(try parser.parse("-s $NET -p tcp --dport ${PORT} -j ACCEPT")[0])
                == "-s 10.5.0.0/16 -p tcp -m tcp --dport 8443 -j ACCEPT")
        #expect(throws: RuleParseError.self) { try parser.parse("-s $MISSING -j ACCEPT") }
        do { _ = try parser.parse("-s $MISSING -j ACCEPT") } catch { #expect(error.reason == "environment variable MISSING is not set") }
    }

    @Test func hostNamesBecomeOneRulePerAddress() throws {
        let parser = RuleParser(resolver: { name, _ in
            name == "db.internal" ? [IPAddress("10.9.0.1")!, IPAddress("10.9.0.2")!] : []
        })
        let rules = try parser.parse("-d db.internal -p tcp --dport 5432 -j ACCEPT")
        #expect(rules.map(RuleRenderer.render) == ["-d 10.9.0.1/32 -p tcp -m tcp --dport 5432 -j ACCEPT",
                                                   "-d 10.9.0.2/32 -p tcp -m tcp --dport 5432 -j ACCEPT"])
        #expect(throws: RuleParseError.self) { try parser.parse("-d nowhere.internal -j ACCEPT") }
        #expect(throws: RuleParseError.self) { try RuleParser().parse("-d db.internal -j ACCEPT") }
    }

    /// Property: random rules survive render → parse unchanged. Seeded (`DOCKNFV_FUZZ_SEED`, printed).
    @Test func randomRulesRoundTrip() throws {
        let seed = ProcessInfo.processInfo.environment["DOCKNFV_FUZZ_SEED"].flatMap { UInt64($0) } ?? 137_2025
        print("rule round trip: DOCKNFV_FUZZ_SEED=\(seed)")
        var generator = SeededGenerator(seed: seed)
        func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &generator)] }
        func port() -> PortRange {
            let a = UInt16.random(in: 1...60000, using: &generator)
            return Bool.random(using: &generator) ? PortRange(a) : PortRange(a, a + UInt16.random(in: 1...5000, using: &generator))
        }
        for _ in 0..<3000 {
            let family: IPFamily = Bool.random(using: &generator) ? .v4 : .v6
            var rule = Rule(family: family, target: .accept)
            if Bool.random(using: &generator) {
                let bytes = (0..<family.byteCount).map { _ in UInt8.random(in: 0...255, using: &generator) }
                rule.source = Negatable(IPPrefix(address: IPAddress(family: family, bytes: bytes)!, length: Int.random(in: 0...family.bitCount, using: &generator))!.network,
                                        inverted: Bool.random(using: &generator))
            }
            if Bool.random(using: &generator) { rule.inInterface = Negatable(pick(["eth0", "eth1", "veth+", "br-1"]), inverted: Bool.random(using: &generator)) }
            let proto = pick([UInt8(6), 17, 0])
            if proto != 0 { rule.proto = Negatable(proto) }
            if proto == 6 { rule.matches.append(.tcp(TCPMatch(destinationPorts: Negatable(port(), inverted: Bool.random(using: &generator))))) }
            if proto == 17 { rule.matches.append(.udp(UDPMatch(sourcePorts: Negatable(port())))) }
            if proto != 0 && Bool.random(using: &generator) {
                rule.matches.append(.multiport(MultiportMatch(direction: pick([.source, .destination, .either]), ports: [port(), port()], inverted: Bool.random(using: &generator))))
            }
            if Bool.random(using: &generator) {
                rule.matches.append(.conntrack(ConntrackMatch(states: Set(ConntrackState.allCases.filter { _ in Bool.random(using: &generator) }).union([.new]), inverted: Bool.random(using: &generator))))
            }
            if Bool.random(using: &generator) { rule.matches.append(.mark(MarkMatch(value: UInt32.random(in: 0...0xffff, using: &generator), mask: pick([0xffff_ffff, 0xff]), inverted: false))) }
            if Bool.random(using: &generator) { rule.matches.append(.comment(pick(["x", "two words", "quote\"d", "a-b_c"]))) }
            if Bool.random(using: &generator) {
                // Any non-empty set of the types the family allows.
                func types() -> Negatable<AddressTypes> {
                    let allowed = family == .v4 ? 0x0fff : 0x0fff & ~AddressTypes.ipv4Only.rawValue
                    let bits = UInt16.random(in: 1...0x0fff, using: &generator) & allowed
                    return Negatable(AddressTypes(rawValue: bits == 0 ? AddressTypes.local.rawValue : bits), inverted: Bool.random(using: &generator))
                }
                let source = Bool.random(using: &generator) ? types() : nil
                rule.matches.append(.addrtype(AddrTypeMatch(source: source, destination: source == nil || Bool.random(using: &generator) ? types() : nil,
                                                            limit: pick([nil, .input, .output]))))
            }
            if Bool.random(using: &generator) {
                func ids() -> Negatable<ClosedRange<UInt32>>? {
                    let first = UInt32.random(in: 0...UInt32.max - 1, using: &generator)
                    return pick([nil, Negatable(first...first), Negatable(first...min(first + 1000, UInt32.max - 1), inverted: true)])
                }
                rule.matches.append(.owner(OwnerMatch(uid: ids(), gid: ids(), socketExists: pick([nil, true, false, true]))))
                if case .owner(let o) = rule.matches.last, o.uid == nil, o.gid == nil, o.socketExists == nil { rule.matches.removeLast() }
            }
            rule.target = pick([.accept, .drop, .return, .jump("CHAIN-1"), .goto("other"), .log(prefix: pick(["", "p: "]), level: pick([4, 6])),
                                .reject(RejectType.default(family)), .mark(value: 1, mask: 0xff)])
            let text = RuleRenderer.render(rule)
            let parsed = try RuleParser(family: family).parse(text)
            #expect(parsed == [rule], "\(text) (DOCKNFV_FUZZ_SEED=\(seed))")
        }
    }

    /// iptables-restore needs no `:CHAIN` line for a built-in chain; neither does docknfv.
    @Test func builtinChainsNeedNoDeclaration() throws {
        let file = try SaveFileReader.read("*filter\n-A FORWARD -p tcp --dport 22 -j ACCEPT\nCOMMIT\n", family: .v4)
        #expect(file.tables.count == 1)
        #expect(file.tables[0].rules.map(\.chain) == ["FORWARD"])
        #expect(file.tables[0].chains.isEmpty)
    }

    @Test func saveFileIsRead() throws {
        let file = try SaveFileReader.read("""
            # Generated by iptables-save
            *nat
            :PREROUTING ACCEPT [0:0]
            :POSTROUTING ACCEPT [3:180]
            -A POSTROUTING -s 10.0.0.0/24 -o eth0 -j MASQUERADE
            COMMIT
            *filter
            :INPUT ACCEPT [0:0]
            :FORWARD DROP [0:0]
            :OUTPUT ACCEPT [0:0]
            :web - [0:0]
            -A FORWARD -p tcp -m tcp --dport 80 -j web
            -A web -j ACCEPT
            COMMIT
            """, family: .v4)
        #expect(file.tables.map(\.table) == [.nat, .filter])
        #expect(file.tables[1].chains.map(\.name) == ["INPUT", "FORWARD", "OUTPUT", "web"])
        #expect(file.tables[1].chains[1].policy == "DROP")
        #expect(file.tables[1].rules.map(\.chain) == ["FORWARD", "web"])
    }

    @Test(arguments: [
        ("*filter\n-A web -j ACCEPT\nCOMMIT", 2, "chain web was not declared"),
        ("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport x -j ACCEPT\nCOMMIT", 3, "not a valid port"),
        ("*filter\n:FORWARD ACCEPT [0:0]\n", 0, "no COMMIT"),
        ("*bogus\nCOMMIT", 1, "unknown table"),
        ("*filter\n:FORWARD MAYBE [0:0]\nCOMMIT", 2, "policy must be"),
        ("*filter\n-I FORWARD -j ACCEPT\nCOMMIT", 2, "unexpected line"),
    ])
    func badSaveFiles(text: String, line: Int, reason: String) {
        do {
            _ = try SaveFileReader.read(text, family: .v4)
            Issue.record("accepted")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }
}
