/// Renders rules in the exact form `iptables-save` / `ip6tables-save` print them, so docknfv's
/// output can be compared with the kernel's line for line and fed back to the parser.
public enum RuleRenderer {
    /// The rule's options, without `-A CHAIN`.
    public static func render(_ rule: Rule) -> String {
        var out: [String] = []
        func negatable(_ inverted: Bool, _ option: String, _ value: String) {
            if inverted { out.append("!") }
            out.append(option)
            out.append(value)
        }
        // A non-contiguous mask is printed in address form, as iptables-save does.
        if let s = rule.source { negatable(s.inverted, "-s", rule.sourceMask.map { "\(s.value.address)/\($0)" } ?? s.value.network.description) }
        if let d = rule.destination { negatable(d.inverted, "-d", rule.destinationMask.map { "\(d.value.address)/\($0)" } ?? d.value.network.description) }
        if let i = rule.inInterface { negatable(i.inverted, "-i", i.value) }
        if let o = rule.outInterface { negatable(o.inverted, "-o", o.value) }
        if let p = rule.proto { negatable(p.inverted, "-p", IPProtocol.name(p.value)) }
        for match in rule.matches { out += render(match) }
        out += render(rule.target, family: rule.family)
        return Tokenizer.joinWords(out)
    }

    /// `-A CHAIN …`, as in a save file.
    public static func appendLine(chain: String, rule: Rule) -> String { "-A \(chain) \(render(rule))" }

    static func ports(_ range: PortRange) -> String {
        range.isSingle ? String(range.lower) : "\(range.lower):\(range.upper)"
    }

    static func render(_ match: Match) -> [String] {
        var out: [String] = []
        func negatable(_ inverted: Bool, _ option: String, _ values: String...) {
            if inverted { out.append("!") }
            out.append(option)
            out += values
        }
        switch match {
        case .tcp(let tcp):
            out += ["-m", "tcp"]
            if let p = tcp.sourcePorts, p.value != .any { negatable(p.inverted, "--sport", ports(p.value)) }
            if let p = tcp.destinationPorts, p.value != .any { negatable(p.inverted, "--dport", ports(p.value)) }
            if let f = tcp.flags { negatable(f.inverted, "--tcp-flags", tcpFlags(f.value.mask), tcpFlags(f.value.compare)) }
        case .udp(let udp):
            out += ["-m", "udp"]
            if let p = udp.sourcePorts, p.value != .any { negatable(p.inverted, "--sport", ports(p.value)) }
            if let p = udp.destinationPorts, p.value != .any { negatable(p.inverted, "--dport", ports(p.value)) }
        case .icmp(let icmp):
            out += ["-m", "icmp"]
            negatable(icmp.inverted, "--icmp-type", icmpType(icmp, anyName: "any"))
        case .icmp6(let icmp):
            out += ["-m", "icmp6"]
            negatable(icmp.inverted, "--icmpv6-type", icmpType(icmp, anyName: "255"))
        case .multiport(let mp):
            out += ["-m", "multiport"]
            negatable(mp.inverted, "--\(mp.direction.rawValue)", mp.ports.map(ports).joined(separator: ","))
        case .conntrack(let ct):
            out += ["-m", "conntrack"]
            let states = ConntrackState.allCases.filter { ct.states.contains($0) }.map(\.rawValue).joined(separator: ",")
            negatable(ct.inverted, "--ctstate", states)
        case .mark(let mark):
            out += ["-m", "mark"]
            let value = "0x" + String(mark.value, radix: 16) + (mark.mask == 0xffff_ffff ? "" : "/0x" + String(mark.mask, radix: 16))
            negatable(mark.inverted, "--mark", value)
        case .set(let set):
            out += ["-m", "set"]
            negatable(set.inverted, "--match-set", set.name, set.directions.map(\.rawValue).joined(separator: ","))
        case .comment(let text):
            out += ["-m", "comment", "--comment", Tokenizer.quoteIfNeeded(text)]
        case .limit(let limit):
            out += ["-m", "limit", "--limit", rate(limit.average)]
            if limit.burst != 5 { out += ["--limit-burst", String(limit.burst)] }
        case .iprange(let range):
            out += ["-m", "iprange"]
            if let s = range.source { negatable(s.inverted, "--src-range", "\(s.value.first)-\(s.value.last)") }
            if let d = range.destination { negatable(d.inverted, "--dst-range", "\(d.value.first)-\(d.value.last)") }
        case .addrtype(let addrtype):
            out += ["-m", "addrtype"]
            if let s = addrtype.source { negatable(s.inverted, "--src-type", s.value.text) }
            if let d = addrtype.destination { negatable(d.inverted, "--dst-type", d.value.text) }
            switch addrtype.limit {
            case .input: out.append("--limit-iface-in")
            case .output: out.append("--limit-iface-out")
            case nil: break
            }
        case .owner(let owner):
            // libxt_owner's save order: the socket test first.
            out += ["-m", "owner"]
            if let exists = owner.socketExists { negatable(!exists, "--socket-exists") }
            func ids(_ range: ClosedRange<UInt32>) -> String {
                range.lowerBound == range.upperBound ? String(range.lowerBound) : "\(range.lowerBound)-\(range.upperBound)"
            }
            if let uid = owner.uid { negatable(uid.inverted, "--uid-owner", ids(uid.value)) }
            if let gid = owner.gid { negatable(gid.inverted, "--gid-owner", ids(gid.value)) }
        }
        return out
    }

    static func icmpType(_ icmp: ICMPMatch, anyName: String) -> String {
        if icmp.isAny || (anyName == "any" && icmp.type == 255) { return anyName }
        if icmp.codes == 0...255 { return String(icmp.type) }
        if icmp.codes.lowerBound == icmp.codes.upperBound { return "\(icmp.type)/\(icmp.codes.lowerBound)" }
        return String(icmp.type)
    }

    static func tcpFlags(_ flags: UInt8) -> String {
        if flags == 0 { return "NONE" }
        let names: [(String, UInt8)] = [("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20)]
        return names.filter { flags & $0.1 != 0 }.map(\.0).joined(separator: ",")
    }

    /// libxt_limit's print_rate: the largest unit that divides cleanly enough.
    static func rate(_ period: UInt32) -> String {
        let rates: [(String, UInt64)] = [("day", 10000 * 86400), ("hour", 10000 * 3600), ("min", 10000 * 60), ("sec", 10000)]
        let p = UInt64(period)
        guard p > 0 else { return "inf" }
        var i = 1
        while i < rates.count {
            if p > rates[i].1 || rates[i].1 / p < rates[i].1 % p { break }
            i += 1
        }
        return "\(rates[i - 1].1 / p)/\(rates[i - 1].0)"
    }

    static func natRange(_ range: NATRange, family: IPFamily) -> String {
        var text = ""
        if let a = range.addresses {
            let addresses = a.first == a.last ? a.first.description : "\(a.first)-\(a.last)"
            text = family == .v6 && range.ports != nil ? "[\(addresses)]" : addresses
        }
        if let p = range.ports { text += ":" + (p.isSingle ? String(p.lower) : "\(p.lower)-\(p.upper)") }
        return text
    }

    /// In the order libxt_*NAT print them.
    static func natFlags(_ flags: NATFlags) -> [String] {
        (flags.contains(.random) ? ["--random"] : []) + (flags.contains(.randomFully) ? ["--random-fully"] : [])
            + (flags.contains(.persistent) ? ["--persistent"] : [])
    }

    /// The target's name as `-j` shows it (`ACCEPT`, `DNAT`, a chain).
    public static func targetName(_ target: Target) -> String {
        render(target, family: .v4)[1]
    }

    static func render(_ target: Target, family: IPFamily) -> [String] {
        switch target {
        case .accept: return ["-j", "ACCEPT"]
        case .drop: return ["-j", "DROP"]
        case .return: return ["-j", "RETURN"]
        case .jump(let chain): return ["-j", chain]
        case .goto(let chain): return ["-g", chain]
        case .reject(let type): return ["-j", "REJECT", "--reject-with", type.name]
        case .log(let prefix, let level):
            var out = ["-j", "LOG"]
            if !prefix.isEmpty { out += ["--log-prefix", Tokenizer.quoteIfNeeded(prefix)] }
            if level != 4 { out += ["--log-level", String(level)] }
            return out
        case .nflog(let group, let prefix, let size, let threshold):
            var out = ["-j", "NFLOG"]
            if !prefix.isEmpty { out += ["--nflog-prefix", Tokenizer.quoteIfNeeded(prefix)] }
            if group != 0 { out += ["--nflog-group", String(group)] }
            if let size { out += ["--nflog-size", String(size)] }
            if threshold != 0 { out += ["--nflog-threshold", String(threshold)] }
            return out
        case .dnat(let range): return ["-j", "DNAT", "--to-destination", natRange(range, family: family)] + natFlags(range.flags)
        case .snat(let range): return ["-j", "SNAT", "--to-source", natRange(range, family: family)] + natFlags(range.flags)
        case .masquerade(let ports, let flags):
            return ["-j", "MASQUERADE"] + (ports.map { ["--to-ports", $0.isSingle ? String($0.lower) : "\($0.lower)-\($0.upper)"] } ?? []) + natFlags(flags)
        case .redirect(let ports, let flags):
            return ["-j", "REDIRECT"] + (ports.map { ["--to-ports", $0.isSingle ? String($0.lower) : "\($0.lower)-\($0.upper)"] } ?? []) + natFlags(flags)
        case .mark(let value, let mask):
            return ["-j", "MARK", "--set-xmark", "0x\(String(value, radix: 16))/0x\(String(mask, radix: 16))"]
        case .tcpmss(let mss):
            return ["-j", "TCPMSS"] + (mss.map { ["--set-mss", String($0)] } ?? ["--clamp-mss-to-pmtu"])
        }
    }
}
