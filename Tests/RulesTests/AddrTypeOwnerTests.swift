import Testing
import Rules

/// `-m addrtype` and `-m owner`: read as iptables 1.8.9 reads them, written as iptables-legacy-save
/// prints them (the lines below, and the canonical ones in RuleParserTests, were taken from
/// iptables-legacy-save after iptables-legacy-restore).
@Suite("Rule text: addrtype and owner")
struct AddrTypeOwnerTests {
    /// What iptables accepts and how iptables-legacy-save then prints it.
    @Test(arguments: [
        ("-m addrtype --dst-type local -j ACCEPT", "-m addrtype --dst-type LOCAL -j ACCEPT"),
        ("-m addrtype --dst-type loc,Broad -j ACCEPT", "-m addrtype --dst-type LOCAL,BROADCAST -j ACCEPT"),
        ("-m addrtype --src-type XRESOLVE,UNSPEC,LOCAL,LOCAL -j ACCEPT", "-m addrtype --src-type UNSPEC,LOCAL,XRESOLVE -j ACCEPT"),
        // `!` before the value, and the options in another order than iptables-save's.
        ("-m addrtype --limit-iface-in --dst-type ! LOCAL --src-type UNICAST -j ACCEPT",
         "-m addrtype --src-type UNICAST ! --dst-type LOCAL --limit-iface-in -j ACCEPT"),
        ("-m owner --uid-owner 5:9 -j ACCEPT", "-m owner --uid-owner 5-9 -j ACCEPT"),
        ("-m owner --uid-owner 0x10 -j ACCEPT", "-m owner --uid-owner 16 -j ACCEPT"),
        ("-m owner --uid-owner 010 -j ACCEPT", "-m owner --uid-owner 8 -j ACCEPT"),
        ("-m owner --uid-owner 7-7 -j ACCEPT", "-m owner --uid-owner 7 -j ACCEPT"),
        ("-m owner --gid-owner 3 --uid-owner 2 --socket-exists -j ACCEPT", "-m owner --socket-exists --uid-owner 2 --gid-owner 3 -j ACCEPT"),
        // Names, as iptables resolves them (getpwnam / getgrnam): root is 0 everywhere.
        ("-m owner --uid-owner root ! --gid-owner root -j ACCEPT", "-m owner --uid-owner 0 ! --gid-owner 0 -j ACCEPT"),
    ])
    func readAsIptablesReadsIt(input: String, canonical: String) throws {
        #expect(RuleRenderer.render(try RuleParser(family: .v4).parse(input)[0]) == canonical)
    }

    @Test func modelValues() throws {
        let rule = try RuleParser(family: .v4).parse("-m addrtype ! --dst-type LOCAL,XRESOLVE --limit-iface-out -m owner --uid-owner 1-2 -j ACCEPT")[0]
        #expect(rule.matches == [
            .addrtype(AddrTypeMatch(destination: Negatable(AddressTypes(rawValue: 1 << 2 | 1 << 11), inverted: true), limit: .output)),
            .owner(OwnerMatch(uid: Negatable(1...2))),
        ])
        #expect(AddressTypes(rawValue: 1 << 2 | 1 << 11).routeTypes == [2, 11])
    }

    /// Refused with the offending token named (iptables refuses each of these too; an ambiguous
    /// abbreviation it would read as the first type that fits).
    @Test(arguments: [
        ("-m addrtype --dst-type BOGUS -j ACCEPT", 4, "BOGUS", "unknown address type"),
        ("-m addrtype --dst-type UN -j ACCEPT", 4, "UN", "ambiguous address type \"UN\": UNSPEC or UNICAST?"),
        ("-m addrtype --dst-type LOCAL, -j ACCEPT", 4, "LOCAL,", "unknown address type \"\""),
        ("-m addrtype --dst-type LOCAL --dst-type LOCAL -j ACCEPT", 5, "--dst-type", "can only be used once"),
        ("-m addrtype --src-type LOCAL ! --limit-iface-in -j ACCEPT", 6, "--limit-iface-in", "cannot be negated"),
        ("-m addrtype --src-type LOCAL --limit-iface-in --limit-iface-out -j ACCEPT", 6, "--limit-iface-out", "cannot be used together"),
        ("-m addrtype --limit-iface-in -j ACCEPT", nil, nil, "-m addrtype needs --src-type or --dst-type"),
        ("-m owner -j ACCEPT", nil, nil, "-m owner needs --uid-owner, --gid-owner or --socket-exists"),
        ("-m owner --uid-owner 4294967295 -j ACCEPT", 4, "4294967295", "not a user id (0-4294967294)"),
        ("-m owner --gid-owner 9-5 -j ACCEPT", 4, "9-5", "the range 9-5 is empty"),
        ("-m owner --uid-owner 5- -j ACCEPT", 4, "5-", "not a user id"),
        ("-m owner --uid-owner -5 -j ACCEPT", 4, "-5", "not a user id"),
        ("-m owner --uid-owner +5 -j ACCEPT", 4, "+5", "not a user id"),
        ("-m owner --uid-owner 08 -j ACCEPT", 4, "08", "not a user id"),
        ("-m owner --gid-owner dnfv-no-such-group -j ACCEPT", 4, "dnfv-no-such-group", "group name known here"),
        ("-m owner --uid-owner 1 --uid-owner 2 -j ACCEPT", 5, "--uid-owner", "can only be used once"),
        ("-m owner --gid-owner 1 --suppl-groups -j ACCEPT", 5, "--suppl-groups", "unknown option"),
    ] as [(String, Int?, String?, String)])
    func refused(text: String, position: Int?, token: String?, reason: String) {
        expectRefused(text, family: .v4, position: position, token: token, reason: reason)
    }

    func expectRefused(_ text: String, family: IPFamily?, position: Int?, token: String?, reason: String) {
        do {
            _ = try RuleParser(family: family).parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.position == position && error.token == token, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    /// xt_addrtype refuses BROADCAST, BLACKHOLE, PROHIBIT and the types after it in IPv6 rules,
    /// also when the family is learnt after the types (`-s fd00::1` later on).
    @Test(arguments: ["BROADCAST", "BLACKHOLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE", "LOCAL,broad"])
    func ipv6RefusesIPv4OnlyTypes(types: String) {
        expectRefused("-m addrtype --dst-type \(types) -j ACCEPT", family: .v6, position: 4, token: types, reason: "do not exist in IPv6 rules")
        expectRefused("-m addrtype --dst-type \(types) -s fd00::1 -j ACCEPT", family: nil, position: 4, token: types, reason: "do not exist in IPv6 rules")
        #expect((try? RuleParser(family: .v4).parse("-m addrtype --dst-type \(types) -j ACCEPT")) != nil)
    }

    // MARK: Where the matches may stand (the cases are in SemanticsRegressionTests)

    /// The words both backends refuse with (Ruleset.validate passes them on).
    @Test func contextNamesTheMatchAndTheHooks() throws {
        let owner = try RuleParser(family: .v4).parse("-m owner --uid-owner 0 -j ACCEPT")[0]
        let ownerError = #expect(throws: RuleContextError.self) { try RuleContext.validate(owner, table: .filter, chain: "INPUT") }
        #expect(ownerError?.description == "\"owner\": -m owner cannot be reached from INPUT (only OUTPUT, POSTROUTING)")
        let limited = try RuleParser(family: .v4).parse("-m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT")[0]
        let limitError = #expect(throws: RuleContextError.self) {
            try RuleContext.validate(limited, table: .nat, chain: "U", builtinHooks: [.prerouting, .output])
        }
        #expect(limitError?.description
                == "\"--limit-iface-out\": -m addrtype --limit-iface-out cannot be reached from PREROUTING (only FORWARD, OUTPUT, POSTROUTING)")
    }
}
