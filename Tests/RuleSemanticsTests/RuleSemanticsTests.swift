import Foundation
import Testing
import IPTables
import NetNS
import RuleEngine
import TestSupport

/// Issue 12: the iptables tools are the oracle. Random rules (over every match, target and edge
/// value the rule model knows, and many it must refuse) go through `iptables-legacy-restore` in one
/// throwaway namespace and through docknfv's library (the import reader, the context table, the
/// table engine) in another; both are read back with `iptables-legacy-save`. Same acceptance, and
/// for accepted rules the same saved line, or the case is one of the documented deliberate
/// differences (docs/rules.md).
///
/// `DOCKNFV_DIFF_SEED` / `DOCKNFV_DIFF_COUNT` choose the seed and the number of rules.
@Suite("Rule semantics: docknfv vs iptables-legacy-restore", .enabled(if: TestEnv.privileged))
struct RuleSemanticsTests {
    static let defaultSeed: UInt64 = 20_241_112
    static let defaultCount = 3000

    /// The seeded cases of a differential run, the seed and count printed so a run can be repeated.
    static func generated(label: String, countVariable: String, defaultCount: Int) -> (seed: UInt64, count: Int, cases: [DiffCase]) {
        let env = ProcessInfo.processInfo.environment
        let seed = env["DOCKNFV_DIFF_SEED"].flatMap { UInt64($0) } ?? defaultSeed
        let count = env[countVariable].flatMap { Int($0) } ?? defaultCount
        print("\(label): DOCKNFV_DIFF_SEED=\(seed) \(countVariable)=\(count)")
        var generator = RuleGenerator(seed: seed)
        return (seed, count, (0..<count).map { _ in generator.next() })
    }

    @Test func differential() throws {
        let (seed, count, cases) = Self.generated(label: "rule semantics", countVariable: "DOCKNFV_DIFF_COUNT", defaultCount: Self.defaultCount)
        let started = ContinuousClock.now

        let outcome = try withNamespaces(["diffip", "diffdn"]) { ns throws in
            for n in ns {
                try n.mustRun(["ipset", "create", RuleGenerator.set4, "hash:ip"])
                try n.mustRun(["ipset", "create", RuleGenerator.set6, "hash:ip", "family", "inet6"])
            }
            let oracle = try IPTablesOracle(namespace: ns[0]).run(cases)
            let docknfv = try DocknfvSide(namespace: ns[1]).run(cases)
            return (oracle, docknfv)
        }

        var agreed = 0, bothRefused = 0, deliberate = 0
        var mismatches: [String] = []
        for (index, c) in cases.enumerated() {
            let want = outcome.0[index], got = outcome.1[index]
            switch (want, got) {
            case (.refused, .refused): agreed += 1; bothRefused += 1
            case (.accepted(let a), .accepted(let b)) where a == b: agreed += 1
            default:
                if let reason = Deliberate.reason(c, iptables: want, docknfv: got) { deliberate += 1; _ = reason; continue }
                mismatches.append("\(c)\n      iptables: \(want)\n      docknfv:  \(got)")
            }
        }
        let seconds = (ContinuousClock.now - started).components.seconds
        print("rule semantics: \(count) rules in \(seconds)s: \(agreed) agreed (\(bothRefused) refused by both), \(deliberate) documented differences, \(mismatches.count) differences")
        for m in mismatches.prefix(40) { print("  DIFF " + m) }
        #expect(mismatches.isEmpty, "\(mismatches.count) rules differ from iptables (seed \(seed)); first: \(mismatches.first ?? "")")
    }
}

// MARK: - Cases

struct DiffCase: CustomStringConvertible {
    var family: IPFamily
    var table: NetfilterTable
    var chain: String
    /// The rule line after `-A CHAIN ` (may carry a `-4`/`-6` line prefix in `linePrefix`).
    var rule: String
    var linePrefix: String = ""
    var line: String { "\(linePrefix)-A \(chain) \(rule)" }
    var description: String { "[\(family) \(table.rawValue)] \(line)" }
}

enum Outcome: Equatable, CustomStringConvertible {
    case accepted([String])
    case refused(String)
    var description: String {
        switch self {
        case .accepted(let lines): return "accepted \(lines)"
        case .refused(let why): return "refused: \(why.prefix(160))"
        }
    }
    var isAccepted: Bool { if case .accepted = self { return true }; return false }
}

/// Runs each batch with at most one case per chain, so the saved lines of a chain belong to one case.
func batches(_ indices: [Int], cases: [DiffCase]) -> [[Int]] {
    var pending = indices
    var out: [[Int]] = []
    while !pending.isEmpty {
        var used = Set<String>(), batch: [Int] = [], rest: [Int] = []
        for i in pending {
            if used.insert(cases[i].chain).inserted { batch.append(i) } else { rest.append(i) }
        }
        out.append(batch)
        pending = rest
    }
    return out
}

func header(_ table: NetfilterTable) -> String {
    "*\(table.rawValue)\n" + table.builtinChains.map { ":\($0) ACCEPT [0:0]\n" }.joined()
        + ":\(RuleGenerator.userChain) - [0:0]\n:\(RuleGenerator.jumpChain) - [0:0]\n"
}

func savedLines(_ ns: TestNamespace, family: IPFamily, table: NetfilterTable) throws -> [String] {
    let tool = family == .v4 ? "iptables-legacy-save" : "ip6tables-legacy-save"
    return try mustRun(["nsenter", "--net=\(ns.path)", tool, "-t", table.rawValue])
        .split(separator: "\n").map(String.init).filter { $0.hasPrefix("-A ") }
}

/// The iptables side: `iptables-legacy-restore` of a batch; a line it refuses is taken out and the
/// rest retried; a refused commit (the kernel's checks) is retried case by case.
struct IPTablesOracle {
    let namespace: TestNamespace

    func run(_ cases: [DiffCase]) throws -> [Outcome] {
        var out = [Outcome?](repeating: nil, count: cases.count)
        let groups = Dictionary(grouping: cases.indices) { "\(cases[$0].family)/\(cases[$0].table.rawValue)" }
        for key in groups.keys.sorted() {
            for batch in batches(groups[key]!, cases: cases) { try resolve(batch, cases, &out) }
        }
        return out.map { $0! }
    }

    func resolve(_ batch: [Int], _ cases: [DiffCase], _ out: inout [Outcome?]) throws {
        var remaining = batch
        while !remaining.isEmpty {
            let family = cases[remaining[0]].family, table = cases[remaining[0]].table
            let text = header(table) + remaining.map { cases[$0].line + "\n" }.joined() + "COMMIT\n"
            let tool = family == .v4 ? "iptables-legacy-restore" : "ip6tables-legacy-restore"
            let result = try runCommand(["nsenter", "--net=\(namespace.path)", tool], input: text)
            if result.succeeded {
                let saved = try savedLines(namespace, family: family, table: table)
                for i in remaining {
                    out[i] = .accepted(saved.filter { $0.hasPrefix("-A \(cases[i].chain) ") })
                }
                return
            }
            let message = result.stderr.split(separator: "\n").first.map(String.init) ?? result.stderr
            let firstRuleLine = table.builtinChains.count + 4 // *table, builtins, two user chains, then rules
            guard let line = Self.failedLine(result.stderr) else { throw TestFailure("\(tool) failed without a line: \(result)") }
            let position = line - firstRuleLine
            if position >= 0 && position < remaining.count {
                out[remaining[position]] = .refused(message)
                remaining.remove(at: position)
                continue
            }
            // The commit failed: the kernel refused one of them. One at a time.
            if remaining.count == 1 { out[remaining[0]] = .refused(message); return }
            for i in remaining { try resolve([i], cases, &out) }
            return
        }
    }

    static func failedLine(_ stderr: String) -> Int? {
        for line in stderr.split(separator: "\n") {
            if line.hasPrefix("Error occurred at line: "), let n = Int(line.dropFirst("Error occurred at line: ".count)) { return n }
            if line.hasSuffix(" failed"), let range = line.range(of: ": line ") {
                let rest = line[range.upperBound...].dropLast(" failed".count)
                if let n = Int(rest) { return n }
            }
        }
        return nil
    }
}

/// docknfv's side: the import reader (a restore file's meaning, taken literally), the context table
/// in the rule model, then the table engine in process, read back with `iptables-legacy-save`.
struct DocknfvSide {
    let namespace: TestNamespace

    func run(_ cases: [DiffCase]) throws -> [Outcome] {
        var out = [Outcome?](repeating: nil, count: cases.count)
        var parsed: [Int: [Rule]] = [:]
        for (i, c) in cases.enumerated() {
            do {
                let file = try SaveFileReader.read(header(c.table) + c.line + "\nCOMMIT\n", family: c.family)
                let rules = file.tables.first?.rules.map(\.rule) ?? []
                for rule in rules {
                    try RuleContext.validate(rule, table: c.table, chain: c.chain)
                }
                parsed[i] = rules
            } catch {
                out[i] = .refused("\(error)")
            }
        }
        let groups = Dictionary(grouping: parsed.keys.sorted()) { "\(cases[$0].family)/\(cases[$0].table.rawValue)" }
        for key in groups.keys.sorted() {
            for batch in batches(groups[key]!, cases: cases) { try resolve(batch, cases, parsed, &out) }
        }
        return out.map { $0! }
    }

    func resolve(_ batch: [Int], _ cases: [DiffCase], _ parsed: [Int: [Rule]], _ out: inout [Outcome?]) throws {
        let family = cases[batch[0]].family, table = cases[batch[0]].table
        var desired = TableRules(family: family, table: table, userChains: [RuleGenerator.userChain, RuleGenerator.jumpChain])
        for i in batch { desired.chains[cases[i].chain, default: []] += parsed[i]! }
        do {
            try NetworkNamespace.run(path: namespace.path) { () throws in _ = try TableEngine().apply(desired) }
        } catch {
            if batch.count == 1 { out[batch[0]] = .refused("\(error)"); return }
            for i in batch { try resolve([i], cases, parsed, &out) }
            return
        }
        let saved = try savedLines(namespace, family: family, table: table)
        for i in batch {
            let owned = "-A \(ChainNames.owned(cases[i].chain)) "
            out[i] = .accepted(saved.filter { $0.hasPrefix(owned) }.map { line in
                var text = "-A \(cases[i].chain) " + line.dropFirst(owned.count)
                for jump in ["-j", "-g"] {
                    let from = " \(jump) \(ChainNames.owned(RuleGenerator.jumpChain))"
                    if text.hasSuffix(from) { text = String(text.dropLast(from.count)) + " \(jump) \(RuleGenerator.jumpChain)" }
                }
                return text
            })
        }
    }
}

// MARK: - Documented deliberate differences (docs/rules.md, "Where docknfv differs from iptables")

enum Deliberate {
    static func reason(_ c: DiffCase, iptables: Outcome, docknfv: Outcome) -> String? {
        let tokens = c.rule.split(separator: " ").map(String.init)
        // `-m state --state X` is stored as `-m conntrack --ctstate X` (same kernel meaning).
        if case .accepted(let a) = iptables, case .accepted(let b) = docknfv,
           a.map({ $0.replacingOccurrences(of: "-m state --state", with: "-m conntrack --ctstate")
                     .replacingOccurrences(of: "-m state ! --state", with: "-m conntrack ! --ctstate") }) == b { return "state as conntrack" }
        guard iptables.isAccepted && !docknfv.isAccepted else { return nil }
        // ICMP in an IPv6 rule / ICMPv6 in an IPv4 rule: never matches; refused as a mistake.
        if c.family == .v6, tokens.contains("icmp") || tokens.contains("1") && tokens.contains("-p") { return "icmp in ipv6" }
        if c.family == .v4, tokens.contains(where: { ["ipv6-icmp", "icmpv6", "icmp6", "58"].contains($0) }) { return "icmpv6 in ipv4" }
        // NFLOG --nflog-range: has no effect in the kernel; refused (use --nflog-size).
        if tokens.contains("--nflog-range") { return "nflog-range" }
        // Values iptables silently cuts or rewrites: a log prefix over 29 bytes, an NFLOG prefix
        // over 63, a comment over 255; abbreviated dotted quads (`1.2.3`); empty ranges.
        if c.rule.contains(String(repeating: "p", count: 30)) || c.rule.contains(String(repeating: "n", count: 64))
            || c.rule.contains(String(repeating: "c", count: 256)) { return "truncated text" }
        if tokens.contains(where: { $0.split(separator: ",").contains { $0.hasPrefix("1.2.3") && !$0.hasPrefix("1.2.3.") } }) { return "abbreviated address" }
        if case .refused(let why) = docknfv, why.contains("is empty (FIRST is above LAST)") { return "empty range" }
        if case .refused(let why) = docknfv {
            // A reversed tcp/udp port range never matches; refused as a mistake.
            if why.contains("is reversed") { return "reversed port range" }
            // An address of the other family (ip6tables reads `10.0.0.1/0` as "any").
            if why.contains("does not fit an") { return "address of the other family" }
            // `-m udp --dport 65536` becomes port 0 in iptables; refused.
            if why.contains("not a valid port \"65536\"") { return "port 65536" }
            // An abbreviated address type that fits several (`UN`): iptables takes the first.
            if why.contains("ambiguous address type") { return "ambiguous address type" }
            // Matches docknfv does not model (sctp, dccp options) are refused, not guessed.
            if why.contains("unknown option"), tokens.contains(where: { ["sctp", "dccp", "132", "33"].contains($0) }) { return "unsupported match" }
        }
        // No Linux interface name holds a `/`: such a rule could never match.
        if tokens.contains("x/y") { return "interface with /" }
        // Control characters in names and texts.
        if c.rule.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) { return "control character" }
        return nil
    }
}

// MARK: - The generator


struct RuleGenerator {
    static let userChain = "U"
    static let jumpChain = "V"
    static let set4 = "h2set", set6 = "h2set6"
    var rng: SeededGenerator
    init(seed: UInt64) { rng = SeededGenerator(seed: seed) }

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &rng)] }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func not(_ p: Double = 0.2) -> [String] { chance(p) ? ["!"] : [] }

    mutating func next() -> DiffCase {
        let family: IPFamily = chance(0.6) ? .v4 : .v6
        let table = pick(NetfilterTable.allCases)
        let chain = chance(0.2) ? Self.userChain : pick(table.builtinChains)
        var t: [String] = []
        var proto: String?

        if chance(0.3) { t += not(0.15) + [pick(["-s", "--source", "-d", "--destination"]), address(family)] }
        if chance(0.15) { t += not(0.15) + ["-d", address(family)] }
        if chance(0.25) { t += not() + [pick(["-i", "--in-interface"]), interface()] }
        if chance(0.25) { t += not() + [pick(["-o", "--out-interface"]), interface()] }
        if chance(0.65) {
            proto = pick(["tcp", "tcp", "udp", "udp", "icmp", "ipv6-icmp", "icmpv6", "sctp", "dccp", "gre", "esp", "ah", "udplite",
                          "all", "0", "6", "17", "255", "256", "TCP", "bogus", "58", "1"])
            t += not(0.1) + ["-p", proto!]
        }
        if chance(0.04) { t += ["-p", pick(["tcp", "udp"])] } // repeated option
        if chance(0.04) { t += ["-s", address(family)] }
        if chance(0.03) { t += [pick(["-4", "-6"])] }

        let matchCount = pick([0, 0, 1, 1, 1, 2, 2, 3])
        for _ in 0..<matchCount { t += match(family: family, proto: proto) }
        t += target(family: family, table: table, proto: proto)
        var c = DiffCase(family: family, table: table, chain: chain, rule: t.joined(separator: " "))
        if chance(0.03) { c.linePrefix = pick(["-4 ", "-6 "]) }
        return c
    }

    mutating func address(_ family: IPFamily) -> String {
        func one() -> String {
            let wrongFamily = chance(0.05)
            let v4 = (family == .v4) != wrongFamily
            let base = v4 ? pick(["10.0.0.1", "10.9.8.7", "192.168.1.0", "0.0.0.0", "255.255.255.255", "172.16.5.4"])
                          : pick(["fd00::1", "2001:db8::7", "::", "fe80::1:2", "ff02::1"])
            switch int(0...9) {
            case 0...2: return base
            case 3...5: return base + "/" + String(int(0...(v4 ? 32 : 128)))
            case 6: return base + "/" + pick(v4 ? ["255.255.255.0", "255.0.255.0", "0.0.0.0", "255.255.255.255", "255.255.0.255", "33", "-1", ""]
                                               : ["ffff::ff", "ffff:ffff::", "129", "ffff:ffff:ffff:ffff::"])
            case 7: return pick(["10.0.0.300", "1.2.3", "fd00::g", "host.invalid", "10.0.0.1/8/8"])
            default: return base + "/" + String(int(0...(v4 ? 32 : 128)))
            }
        }
        return chance(0.15) ? [one(), one()].joined(separator: ",") : one()
    }

    mutating func interface() -> String {
        pick(["eth0", "eth+", "veth1", "br-1", "lo", "a234567890123456", "a23456789012345", "+", "eth0.100", "x/y", "dummy_9"])
    }

    mutating func port() -> String {
        switch int(0...12) {
        case 0: return "0"
        case 1: return "65535"
        case 2: return "65536"
        case 3: return pick(["http", "ssh", "domain", "https", "nosuchservice"])
        case 4: return "\(int(1...1000)):\(int(1...65535))"
        case 5: return ":\(int(0...65535))"
        case 6: return "\(int(0...65535)):"
        case 7: return "\(int(1000...2000)):\(int(1...999))"
        case 8: return pick(["-1", "1-5", "abc", ""])
        case 9: let p = int(1...65535); return "\(p):\(p)"
        default: return String(int(1...65535))
        }
    }

    mutating func match(family: IPFamily, proto: String?) -> [String] {
        switch int(0...13) {
        case 0, 1: // tcp / udp
            let name = proto == "udp" ? "udp" : proto == "tcp" || chance(0.7) ? "tcp" : pick(["udp", "tcp"])
            var t = chance(0.6) ? ["-m", name] : []
            for _ in 0..<int(1...2) {
                switch int(0...4) {
                case 0: t += not() + [pick(["--sport", "--source-port"]), port()]
                case 1, 2: t += not() + [pick(["--dport", "--destination-port"]), port()]
                case 3 where name == "tcp":
                    t += not() + ["--tcp-flags", pick(["SYN,RST", "ALL", "NONE", "FIN,SYN,RST,ACK", "syn,ack", "BOGUS"]), pick(["SYN", "NONE", "ALL", "ACK,FIN"])]
                case 4 where name == "tcp": t += not() + ["--syn"]
                default: t += ["--dport", port()]
                }
            }
            return t
        case 2: // icmp / icmp6
            let v6 = family == .v6 ? !chance(0.1) : chance(0.1)
            let name = v6 ? pick(["icmp6", "icmpv6"]) : "icmp"
            let types = v6 ? ["echo-request", "echo-req", "128", "1/3", "255", "any", "beyond", "packet-too-big", "neighbour-solicitation", "300", "1/300", "redirect", "ping", "echo"]
                           : ["echo-request", "echo-req", "ECHO-REQ", "8", "3/4", "any", "an", "255", "255/3", "host-unknown", "redirect", "echo", "256", "3/", "ip-header-bad", "pong", "ttl-zero-during-transit"]
            return (chance(0.7) ? ["-m", name] : []) + not() + [v6 ? "--icmpv6-type" : "--icmp-type", pick(types)]
        case 3: // multiport
            let n = int(1...9)
            let list = (0..<n).map { _ in chance(0.3) ? "\(int(1...3000)):\(int(1...65535))" : String(int(0...65535)) }.joined(separator: ",")
            var t = ["-m", "multiport"] + not() + [pick(["--dports", "--sports", "--ports", "--destination-ports", "--source-ports"]), chance(0.1) ? pick(["1,65536", "5:5", "", "1,,2", "http,22"]) : list]
            if chance(0.05) { t += ["--sports", "1"] }
            return t
        case 4: // conntrack / state
            let states = ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT", "new", "BOGUS"]
            let list = (0..<int(1...3)).map { _ in pick(states) }.joined(separator: ",")
            if chance(0.3) { return ["-m", "state"] + not() + ["--state", list] }
            var t = ["-m", "conntrack"] + not() + [pick(["--ctstate", "--ctstate"]), list]
            if chance(0.05) { t += ["--ctstate", "NEW"] }
            return t
        case 5: // mark
            let value = pick(["0", "1", "0x10", "010", "0xffffffff", "0x100000000", "-1", "abc", "5/3", "0x10/0xff", "0/0", "1/"])
            var t = ["-m", "mark"] + not() + ["--mark", value]
            if chance(0.05) { t += ["--mark", "1"] }
            return t
        case 6: // set
            let name = family == .v4 ? Self.set4 : Self.set6
            // An IPv4 set in an IPv6 rule is not generated: see the report (the set's family is not checked yet).
            return ["-m", "set"] + not() + ["--match-set", chance(0.85) ? name : pick(["nosuch", name]),
                                               pick(["src", "dst", "src,dst", "dst,src,src", "src,src,src,src,src,src,src", "bogus"])]
        case 7: // comment
            let text = pick(["x", "\"two words\"", "\"quote\\\"d\"", "a-b_c", "\"\"", "$HOME", "\"${HOME}\"", "'single quoted'",
                             "\"" + String(repeating: "c", count: 255) + "\"", "\"" + String(repeating: "c", count: 256) + "\"", "a'b", "\"back\\\\slash\""])
            var t = ["-m", "comment", "--comment", text]
            if chance(0.05) { t += ["--comment", "again"] }
            return t
        case 8: // limit
            var t = ["-m", "limit"]
            if chance(0.8) { t += ["--limit", pick(["1/sec", "5/min", "3/hour", "2/day", "10/second", "1/s", "1/m", "1/h", "1/d", "10000/sec", "10001/sec", "0/sec", "7", "5/fortnight", "1/minute"])] }
            if chance(0.5) { t += ["--limit-burst", pick(["0", "1", "5", "10", "10000", "10001", "-1"])] }
            return t
        case 9: // iprange
            let a = family == .v4 ? ["10.0.0.1", "10.0.0.9", "192.168.0.0"] : ["fd00::1", "fd00::9", "2001:db8::"]
            func range() -> String {
                switch int(0...5) {
                case 0: return pick(a)
                case 1: return "\(a[1])-\(a[0])"
                case 2: return pick(["10.0.0.1-fd00::1", "bogus", "10.0.0.1-"])
                default: return "\(a[0])-\(pick(a))"
                }
            }
            var t = ["-m", "iprange"]
            if chance(0.7) { t += not() + ["--src-range", range()] }
            if chance(0.5) || t.count == 2 { t += not() + ["--dst-range", range()] }
            return t
        case 12: // addrtype
            let types = ["LOCAL", "LOCAL", "UNICAST", "BROADCAST", "MULTICAST", "UNSPEC", "ANYCAST", "BLACKHOLE", "UNREACHABLE",
                         "PROHIBIT", "THROW", "NAT", "XRESOLVE", "local", "Loc", "x", "UN", "BOGUS"]
            func list() -> String {
                chance(0.05) ? pick(["LOCAL,", ",LOCAL", "LOCAL,,UNICAST"]) : (0..<pick([1, 1, 1, 2, 3])).map { _ in pick(types) }.joined(separator: ",")
            }
            var t = ["-m", "addrtype"]
            if chance(0.5) { t += not() + ["--src-type", list()] }
            if chance(0.7) { t += not() + ["--dst-type", list()] }
            if chance(0.35) { t += not(0.05) + [pick(["--limit-iface-in", "--limit-iface-out"])] }
            if chance(0.04) { // a second limit, or an option repeated
                let again = pick(["--limit-iface-in", "--limit-iface-out", "--src-type"])
                t += again == "--src-type" ? [again, "LOCAL"] : [again]
            }
            return t
        case 13: // owner
            let ids = ["0", "1000", "1000-2000", "5:9", "0x10", "010", "08", "4294967294", "4294967295", "9-5", "7-7", "1-", "-1",
                       "root", "daemon", "nobody", "nogroup", "nosuchname"]
            var t = ["-m", "owner"]
            if chance(0.25) { t += not() + ["--socket-exists"] }
            if chance(0.6) { t += not() + ["--uid-owner", pick(ids)] }
            if chance(0.5) { t += not() + ["--gid-owner", pick(ids)] }
            if chance(0.03) { t += [pick(["--uid-owner", "--gid-owner"]), "1"] }
            return t
        case 10: // wrong-protocol module use
            return pick([["-m", "tcp", "--dport", "22"], ["-m", "udp", "--sport", "53"], ["-m", "icmp", "--icmp-type", "8"], ["-m", "frobnicate"]])
        default:
            return ["-m", "comment", "--comment", pick(["c1", "c2"])]
        }
    }

    mutating func natAddress(_ family: IPFamily) -> String {
        let a = family == .v4 ? ["10.0.0.5", "10.0.0.9", "198.51.100.1"] : ["fd00::5", "fd00::9"]
        let addr = chance(0.2) ? "\(a[0])-\(pick(a))" : pick(a)
        if chance(0.4) {
            let ports = pick(["80", "0", "65535", "65536", "1000-2000", "2000-1000", "http"])
            return family == .v4 ? (chance(0.1) ? ":\(ports)" : "\(addr):\(ports)") : "[\(addr)]:\(ports)"
        }
        return chance(0.05) ? pick(["bogus", "10.0.0.1/24", ""]) : addr
    }

    mutating func natFlags() -> [String] {
        var t: [String] = []
        if chance(0.2) { t.append("--random") }
        if chance(0.15) { t.append("--persistent") }
        if chance(0.1) { t.append("--random-fully") }
        return t
    }

    mutating func target(family: IPFamily, table: NetfilterTable, proto: String?) -> [String] {
        let jump = pick(["-j", "-j", "--jump"])
        switch int(0...16) {
        case 0: return [jump, "ACCEPT"]
        case 1: return [jump, "DROP"]
        case 2: return [jump, "RETURN"]
        case 3: return [pick(["-j", "-g"]), chance(0.9) ? Self.jumpChain : pick(["NOSUCH", "bad/chain"])]
        case 4:
            let types = family == .v4 ? ["icmp-port-unreachable", "icmp-host-prohibited", "tcp-reset", "port-unreach", "icmp-admin-prohibited", "icmp6-no-route", "bogus"]
                                      : ["icmp6-adm-prohibited", "tcp-reset", "icmp6-port-unreachable", "no-route", "icmp-port-unreachable"]
            return [jump, "REJECT"] + (chance(0.7) ? ["--reject-with", pick(types)] : [])
        case 5:
            var t = [jump, "LOG"]
            if chance(0.6) { t += ["--log-prefix", pick(["x", "\"dropped: \"", "\"\"", String(repeating: "p", count: 29), String(repeating: "p", count: 30), "$HOME"])] }
            if chance(0.5) { t += ["--log-level", pick(["0", "4", "6", "7", "8", "warning", "warn", "panic", "info", "DEBUG", "err", "error"])] }
            return t
        case 6:
            var t = [jump, "NFLOG"]
            if chance(0.5) { t += ["--nflog-group", pick(["0", "5", "65535", "65536"])] }
            if chance(0.4) { t += ["--nflog-prefix", pick(["fw", "\"two words\"", String(repeating: "n", count: 63), String(repeating: "n", count: 64)])] }
            if chance(0.3) { t += ["--nflog-size", pick(["0", "128", "4294967295"])] }
            if chance(0.2) { t += ["--nflog-threshold", pick(["0", "1", "3", "65535"])] }
            if chance(0.05) { t += ["--nflog-range", "5"] }
            return t
        case 7: return [jump, "DNAT"] + (chance(0.95) ? [pick(["--to-destination", "--to"]), natAddress(family)] : []) + natFlags()
        case 8: return [jump, "SNAT"] + (chance(0.95) ? [pick(["--to-source", "--to"]), natAddress(family)] : []) + natFlags()
        case 9, 10:
            var t = [jump, pick(["MASQUERADE", "REDIRECT"])]
            if chance(0.5) { t += ["--to-ports", pick(["1024-2048", "80", "0", "65535", "65536", "2000-1000", "1:5"])] }
            return t + natFlags()
        case 11:
            return [jump, "MARK", pick(["--set-mark", "--set-xmark"]), pick(["1", "0x10/0xf0", "0xffffffff", "0x100000000", "5/", "abc"])]
        case 12:
            return [jump, "TCPMSS"] + (chance(0.5) ? ["--clamp-mss-to-pmtu"] : ["--set-mss", pick(["1400", "0", "65535", "65534", "1"])])
        case 13:
            // TCPMSS with its required match.
            return ["-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", jump, "TCPMSS", "--clamp-mss-to-pmtu"]
        case 14: return [jump, pick(["accept", "NOTATARGET", "CONNMARK"])]
        default: return [jump, pick(["ACCEPT", "DROP"])]
        }
    }
}
