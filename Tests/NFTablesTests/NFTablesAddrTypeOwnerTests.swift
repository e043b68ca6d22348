import Foundation
import Testing
import NFTables
import NetNS
import RuleEngine
import TestSupport

/// `-m addrtype` as `fib` and `-m owner` as `meta skuid`/`skgid`: docknfv's rules must list exactly
/// as nft lists the same rule given as nft text — `iptables-translate`'s where it translates the
/// rule faithfully, the hand-written line otherwise — and as the line written out here.
@Suite("nftables backend: addrtype and owner")
struct NFTablesAddrTypeOwnerTests {
    struct Case: CustomStringConvertible {
        var table: NetfilterTable, chain: String, rule: String
        /// The rule as `nft list` prints it (counter values dropped).
        var listed: String
        /// Whether iptables-translate's text means the rule (it keeps only --src-type when both
        /// types are given, drops THROW/NAT/XRESOLVE, and translates no owner match with two options).
        var translates = true
        var description: String { "-t \(table.rawValue) -A \(chain) \(rule)" }
    }

    static let cases: [Case] = [
        Case(table: .nat, chain: "PREROUTING", rule: "-m addrtype --dst-type LOCAL -j ACCEPT", listed: "fib daddr type local counter accept"),
        Case(table: .nat, chain: "PREROUTING", rule: "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", listed: "fib daddr . iif type local counter accept"),
        Case(table: .nat, chain: "OUTPUT", rule: "-m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT", listed: "fib daddr . oif type local counter accept"),
        Case(table: .nat, chain: "PREROUTING", rule: "-m addrtype ! --dst-type LOCAL -j ACCEPT", listed: "fib daddr type != local counter accept"),
        Case(table: .nat, chain: "PREROUTING", rule: "-m addrtype --dst-type LOCAL,BROADCAST -j ACCEPT", listed: "fib daddr type { local, broadcast } counter accept"),
        Case(table: .filter, chain: "FORWARD", rule: "-m addrtype ! --src-type UNICAST,MULTICAST,BLACKHOLE --limit-iface-out -j DROP",
             listed: "fib saddr . oif type != { unicast, multicast, blackhole } counter drop"),
        Case(table: .filter, chain: "INPUT", rule: "-m addrtype --src-type UNSPEC -j DROP", listed: "fib saddr type unspec counter drop"),
        Case(table: .filter, chain: "FORWARD", rule: "-m addrtype --src-type LOCAL ! --dst-type UNICAST --limit-iface-in -j DROP",
             listed: "fib saddr . iif type local fib daddr . iif type != unicast counter drop", translates: false),
        Case(table: .filter, chain: "INPUT", rule: "-m addrtype --dst-type THROW -j DROP", listed: "fib daddr type 9 counter drop", translates: false),
        Case(table: .filter, chain: "INPUT", rule: "-m addrtype --dst-type LOCAL,NAT,XRESOLVE -j DROP", listed: "fib daddr type { local, 10, 11 } counter drop", translates: false),
        Case(table: .nat, chain: "PREROUTING", rule: "-p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
             listed: "fib daddr type local tcp dport 8080 counter dnat to 10.0.0.5:80"),
        Case(table: .filter, chain: "OUTPUT", rule: "-m owner --uid-owner 1000 -j ACCEPT", listed: "meta skuid 1000 counter accept"),
        Case(table: .filter, chain: "OUTPUT", rule: "-m owner --uid-owner 1000-2000 -j ACCEPT", listed: "meta skuid 1000-2000 counter accept"),
        Case(table: .nat, chain: "POSTROUTING", rule: "-m owner --gid-owner 5-7 -j MASQUERADE", listed: "meta skgid 5-7 counter masquerade"),
        Case(table: .mangle, chain: "POSTROUTING", rule: "-m owner --gid-owner 4294967294 -j ACCEPT", listed: "meta skgid 4294967294 counter accept"),
        Case(table: .filter, chain: "OUTPUT", rule: "-m owner --socket-exists --uid-owner 0 --gid-owner 3-4 -j DROP",
             listed: "meta skuid 0 meta skgid 3-4 counter drop", translates: false),
    ]

    /// The nft text for a case: what iptables-translate prints (inside `nft '…'`), else the listed line.
    static func nftText(_ c: Case) throws -> String {
        guard c.translates else { return c.listed }
        let printed = try mustRun(["iptables-translate", "-t", c.table.rawValue, "-A", c.chain] + c.rule.split(separator: " ").map(String.init))
        let prefix = "nft 'add rule ip \(c.table.rawValue) \(c.chain) "
        guard printed.hasPrefix(prefix), let end = printed.lastIndex(of: "'") else { throw TestFailure("iptables-translate printed \(printed)") }
        return String(printed[printed.index(printed.startIndex, offsetBy: prefix.count)..<end])
    }

    @Test(.enabled(if: TestEnv.privileged)) func listedAsNftListsTheSameRule() throws {
        var tables: [NetfilterTable: TableRules] = [:]
        for c in Self.cases { tables[c.table, default: TableRules(family: .v4, table: c.table)].chains[c.chain, default: []] += try rules([c.rule]) }
        // The scratch table: base chains with docknfv's names, hooks and priorities, holding the nft text.
        var script = "table ip dnfvxlt {\n"
        for table in NetfilterTable.allCases {
            for chain in table.builtinChains {
                let type = table == .nat ? "nat" : table == .mangle && chain == "OUTPUT" ? "route" : "filter"
                let priority = table == .nat ? (chain == "PREROUTING" || chain == "OUTPUT" ? -100 : 100) : table == .mangle ? -150 : table == .raw ? -300 : 0
                script += "chain \(table.rawValue)-\(chain) { type \(type) hook \(chain.lowercased()) priority \(priority); }\n"
            }
        }
        script += "}\n"
        let texts = try Self.cases.map(Self.nftText)
        for (c, text) in zip(Self.cases, texts) { script += "add rule ip dnfvxlt \(c.table.rawValue)-\(c.chain) \(text)\n" }

        try withNamespaces(["nftao"]) { ns throws in
            _ = try apply(ns[0], Ruleset(tables: NetfilterTable.allCases.compactMap { tables[$0] }))
            let loaded = try runCommand(["ip", "netns", "exec", ns[0].name, "nft", "-f", "-"], input: script)
            #expect(loaded.succeeded, "\(loaded)\n\(script)")
            let ours = try ruleLines(ns[0], table: "docknfv"), theirs = try ruleLines(ns[0], table: "dnfvxlt")
            for (c, text) in zip(Self.cases, texts) {
                let chain = "\(c.table.rawValue)-\(c.chain)"
                let index = Self.cases.filter { "\($0.table.rawValue)-\($0.chain)" == chain }.firstIndex { $0.rule == c.rule }!
                #expect(ours[chain]?[index] == c.listed, "\(c)")
                #expect(theirs[chain]?[index] == c.listed, "\(c): nft lists \(text) differently")
            }
        }
    }

    /// `nft list table ip NAME` as chain → rule lines, counters without values.
    func ruleLines(_ ns: TestNamespace, table: String) throws -> [String: [String]] {
        var out: [String: [String]] = [:], chain: String?
        for line in try listing(ns, table: table) {
            if line.hasPrefix("chain "), line.hasSuffix(" {") { chain = String(line.dropFirst(6).dropLast(2)); continue }
            if line == "}" { chain = nil; continue }
            guard let current = chain, !line.hasPrefix("type ") else { continue }
            out[current, default: []].append(line)
        }
        return out
    }

    /// No exact nf_tables expression: refused by name (use --backend iptables).
    @Test(arguments: [
        (IPFamily.v6, NetfilterTable.nat, "PREROUTING", "-m addrtype --dst-type UNICAST -j ACCEPT", "-m addrtype in an IPv6 rule has no exact nftables equivalent"),
        (IPFamily.v6, NetfilterTable.nat, "PREROUTING", "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", "-m addrtype in an IPv6 rule has no exact nftables equivalent"),
        (.v4, .filter, "OUTPUT", "-m owner ! --uid-owner 1000 -j ACCEPT", "! --uid-owner or ! --gid-owner (it matches packets without a socket)"),
        (.v4, .nat, "POSTROUTING", "-m owner --uid-owner 1 ! --gid-owner 1 -j MASQUERADE", "! --uid-owner or ! --gid-owner"),
        (.v4, .filter, "OUTPUT", "-m owner --socket-exists -j ACCEPT", ": --socket-exists has no exact nftables equivalent"),
        (.v4, .filter, "OUTPUT", "-m owner ! --socket-exists -j ACCEPT", "! --socket-exists has no exact nftables equivalent"),
        (.v4, .filter, "OUTPUT", "-m owner ! --socket-exists --uid-owner 1 -j ACCEPT", "! --socket-exists"),
    ])
    func refusedByName(family: IPFamily, table: NetfilterTable, chain: String, text: String, reason: String) throws {
        let ruleset = Ruleset(tables: [TableRules(family: family, table: table, chains: [chain: try rules([text], family)])])
        #expect { try NFTablesBackend().validate(ruleset) } throws: { error in
            (error as? EngineError)?.code == .unsupported && "\(error)".contains(reason)
        }
    }
}
