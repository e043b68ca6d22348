import RuleEngine

/// An anonymous set a rule carries with it (a multiport list becomes `tcp dport { 22, 80-90 }`,
/// several address types `fib daddr type { local, broadcast }`).
struct AnonymousSet: Equatable, Sendable {
    var keyType: UInt32
    var keyLength: UInt32
    /// An interval set, or a plain one (each range's first == last).
    var interval = true
    /// Keys in host byte order (route types), not network order (ports).
    var hostOrder = false
    /// Inclusive ranges of keys, sorted and disjoint.
    var ranges: [(first: [UInt8], last: [UInt8])]

    static func == (a: AnonymousSet, b: AnonymousSet) -> Bool {
        a.keyType == b.keyType && a.keyLength == b.keyLength && a.interval == b.interval && a.hostOrder == b.hostOrder
            && a.ranges.elementsEqual(b.ranges) { $0.first == $1.first && $0.last == $1.last }
    }
}

/// One rule as nf_tables expressions, with its anonymous sets and its comment.
struct TranslatedRule: Equatable, Sendable {
    var expressions: [NFTExpr] = []
    var anonymousSets: [AnonymousSet] = []
    var comment: String?
}

/// Translates docknfv's rule model into nf_tables expressions with iptables' meaning (the
/// expressions `nft` itself generates for what `iptables-translate` prints). A rule that nf_tables
/// cannot express exactly is refused, naming the rule and the part — never approximated.
struct Translator {
    /// The kernel chain a user chain of the table becomes.
    var chainName: (String) -> String
    /// Sets the ruleset owns, for `-m set`.
    var sets: [String: SetSpec]

    func translate(_ rule: Rule) throws -> TranslatedRule {
        var out = TranslatedRule()
        var comments: [String] = []
        func refuse(_ what: String) -> EngineError {
            EngineError(.unsupported, "rule \"\(RuleRenderer.render(rule))\": \(what) has no exact nftables equivalent; use --backend iptables for it")
        }
        let family = rule.family
        let addressOffset: (source: UInt32, destination: UInt32) = family == .v4 ? (12, 16) : (8, 24)

        if let proto = rule.proto, proto.value != 0 || proto.inverted {
            if proto.value == 0 { throw refuse("\"! -p all\" (never matches)") }
            // iptables-translate: `ip protocol` for IPv4, `meta l4proto` for IPv6.
            if family == .v4 { out.expressions.append(.payload(base: .network, offset: 9, length: 1, dreg: NFT.reg1)) }
            else { out.expressions.append(.meta(key: NFT.metaL4proto, dreg: NFT.reg1)) }
            out.expressions.append(.cmp(proto.inverted ? .neq : .eq, sreg: NFT.reg1, data: [proto.value]))
        }
        for (selector, mask, offset) in [(rule.source, rule.sourceMask, addressOffset.source), (rule.destination, rule.destinationMask, addressOffset.destination)] {
            guard let selector else { continue }
            if let mask {
                // A non-contiguous netmask: address & mask == the (already masked) address.
                let bytes = selector.value.address.bytes
                out.expressions += [.payload(base: .network, offset: offset, length: UInt32(bytes.count), dreg: NFT.reg1),
                                    .bitwise(sreg: NFT.reg1, dreg: NFT.reg1, mask: mask.bytes, xor: [UInt8](repeating: 0, count: bytes.count)),
                                    .cmp(selector.inverted ? .neq : .eq, sreg: NFT.reg1, data: bytes)]
                continue
            }
            try out.expressions += address(selector, offset: offset, refuse: refuse)
        }
        for (selector, key, option) in [(rule.inInterface, NFT.metaIifname, "-i"), (rule.outInterface, NFT.metaOifname, "-o")] {
            guard let selector else { continue }
            out.expressions.append(.meta(key: key, dreg: NFT.reg1))
            var name = Array(selector.value.utf8)
            if name.last == UInt8(ascii: "+") { name.removeLast() } // `eth+` → compare the prefix only
            else { name += [UInt8](repeating: 0, count: 16 - name.count) }
            if name.isEmpty { if selector.inverted { throw refuse("\"! \(option) +\" (never matches)") }; out.expressions.removeLast(); continue }
            out.expressions.append(.cmp(selector.inverted ? .neq : .eq, sreg: NFT.reg1, data: name))
        }
        for match in rule.matches {
            switch match {
            case .tcp(let tcp):
                try out.expressions += ports(tcp.sourcePorts, offset: 0) + ports(tcp.destinationPorts, offset: 2)
                if let flags = tcp.flags {
                    out.expressions += [.payload(base: .transport, offset: 13, length: 1, dreg: NFT.reg1),
                                        .bitwise(sreg: NFT.reg1, dreg: NFT.reg1, mask: [flags.value.mask], xor: [0]),
                                        .cmp(flags.inverted ? .neq : .eq, sreg: NFT.reg1, data: [flags.value.compare])]
                }
            case .udp(let udp):
                try out.expressions += ports(udp.sourcePorts, offset: 0) + ports(udp.destinationPorts, offset: 2)
            case .icmp(let icmp), .icmp6(let icmp):
                out.expressions += icmpType(icmp)
            case .multiport(let multiport):
                guard multiport.direction != .either else { throw refuse("-m multiport --ports (source or destination)") }
                let set = AnonymousSet(keyType: NFT.typeService, keyLength: 2,
                                       ranges: Self.coalesce(multiport.ports.map { (Bytes.be16($0.lower), Bytes.be16($0.upper)) }))
                out.anonymousSets.append(set)
                out.expressions += [.payload(base: .transport, offset: multiport.direction == .source ? 0 : 2, length: 2, dreg: NFT.reg1),
                                    .lookup(sreg: NFT.reg1, set: "__set%d", setID: UInt32(out.anonymousSets.count - 1), inverted: multiport.inverted)]
            case .conntrack(let conntrack):
                try out.expressions += self.conntrack(conntrack, refuse: refuse)
            case .mark(let mark):
                out.expressions.append(.meta(key: NFT.metaMark, dreg: NFT.reg1))
                if mark.mask != 0xffff_ffff {
                    out.expressions.append(.bitwise(sreg: NFT.reg1, dreg: NFT.reg1, mask: Bytes.host32(mark.mask), xor: Bytes.host32(0)))
                }
                out.expressions.append(.cmp(mark.inverted ? .neq : .eq, sreg: NFT.reg1, data: Bytes.host32(mark.value)))
            case .set(let match):
                try out.expressions += setLookup(match, family: family, refuse: refuse)
            case .comment(let text):
                comments.append(text)
            case .limit(let limit):
                out.expressions.append(Self.limit(limit))
            case .iprange(let range):
                for (selector, offset) in [(range.source, addressOffset.source), (range.destination, addressOffset.destination)] {
                    guard let selector else { continue }
                    out.expressions += [.payload(base: .network, offset: offset, length: UInt32(family.byteCount), dreg: NFT.reg1),
                                        .range(inverted: selector.inverted, sreg: NFT.reg1, from: selector.value.first.bytes, to: selector.value.last.bytes)]
                }
            case .addrtype(let match):
                try out.expressions += addrtype(match, family: family, sets: &out.anonymousSets, refuse: refuse)
            case .owner(let match):
                try out.expressions += owner(match, refuse: refuse)
            }
        }
        if comments.count > 1 { throw refuse("more than one comment") }
        if let comment = comments.first, comment.utf8.count > Self.maxCommentBytes {
            throw refuse("a comment over \(Self.maxCommentBytes) bytes (a rule's user data holds 256 bytes, docknfv's fingerprint included)")
        }
        out.comment = comments.first
        out.expressions.append(.counter) // iptables counts every rule; iptables-translate adds `counter`
        out.expressions += try target(rule.target, family: family, refuse: refuse)
        return out
    }

    /// NFT_USERDATA_MAXLEN (256) less the comment's type, length and NUL and the fingerprint's
    /// 10 bytes (RuleUserData): a longer comment makes the kernel refuse the rule with ERANGE.
    static let maxCommentBytes = 256 - 3 - 10

    // MARK: Matches

    func address(_ selector: Negatable<IPPrefix>, offset: UInt32, refuse: (String) -> EngineError) throws -> [NFTExpr] {
        let prefix = selector.value
        let bytes = prefix.address.bytes
        if prefix.length == 0 {
            if selector.inverted { throw refuse("a negated /0 address (never matches)") }
            return []
        }
        if prefix.length % 8 == 0 {
            // Whole bytes: load only those (what nft does for `ip saddr 10.0.0.0/8`).
            let count = prefix.length / 8
            return [.payload(base: .network, offset: offset, length: UInt32(count), dreg: NFT.reg1),
                    .cmp(selector.inverted ? .neq : .eq, sreg: NFT.reg1, data: Array(bytes.prefix(count)))]
        }
        let mask = Bytes.mask(prefixLength: prefix.length, bytes: bytes.count)
        return [.payload(base: .network, offset: offset, length: UInt32(bytes.count), dreg: NFT.reg1),
                .bitwise(sreg: NFT.reg1, dreg: NFT.reg1, mask: mask, xor: [UInt8](repeating: 0, count: bytes.count)),
                .cmp(selector.inverted ? .neq : .eq, sreg: NFT.reg1, data: zip(bytes, mask).map { $0 & $1 })]
    }

    func ports(_ selector: Negatable<PortRange>?, offset: UInt32) throws -> [NFTExpr] {
        guard let selector else { return [] }
        let range = selector.value
        let load = NFTExpr.payload(base: .transport, offset: offset, length: 2, dreg: NFT.reg1)
        if range.isSingle { return [load, .cmp(selector.inverted ? .neq : .eq, sreg: NFT.reg1, data: Bytes.be16(range.lower))] }
        if selector.inverted { return [load, .range(inverted: true, sreg: NFT.reg1, from: Bytes.be16(range.lower), to: Bytes.be16(range.upper))] }
        if range == .any { return [load] } // any port: the header must still be there, as for iptables
        return [load, .cmp(.gte, sreg: NFT.reg1, data: Bytes.be16(range.lower)), .cmp(.lte, sreg: NFT.reg1, data: Bytes.be16(range.upper))]
    }

    func icmpType(_ icmp: ICMPMatch) -> [NFTExpr] {
        // `! --icmp-type any` never matches in xt_icmp: a comparison no type can satisfy (type < 0).
        if icmp.isAny { return icmp.inverted ? [.payload(base: .transport, offset: 0, length: 1, dreg: NFT.reg1), .cmp(.lt, sreg: NFT.reg1, data: [0])] : [] }
        if icmp.codes == 0...255 {
            return [.payload(base: .transport, offset: 0, length: 1, dreg: NFT.reg1), .cmp(icmp.inverted ? .neq : .eq, sreg: NFT.reg1, data: [icmp.type])]
        }
        if icmp.codes.count == 1 && !icmp.inverted {
            return [.payload(base: .transport, offset: 0, length: 1, dreg: NFT.reg1), .cmp(.eq, sreg: NFT.reg1, data: [icmp.type]),
                    .payload(base: .transport, offset: 1, length: 1, dreg: NFT.reg1), .cmp(.eq, sreg: NFT.reg1, data: [icmp.codes.lowerBound])]
        }
        // Type and code as one 16-bit value, so a negation covers both (`! --icmp-type 3/1`).
        return [.payload(base: .transport, offset: 0, length: 2, dreg: NFT.reg1),
                .range(inverted: icmp.inverted, sreg: NFT.reg1, from: [icmp.type, icmp.codes.lowerBound], to: [icmp.type, icmp.codes.upperBound])]
    }

    /// nf_tables' ct state bits, and the ct status bits that xt_conntrack's SNAT/DNAT states test.
    static func conntrackBits(_ state: ConntrackState) -> (state: UInt32, status: UInt32) {
        switch state {
        case .invalid: return (1, 0)
        case .established: return (2, 0)
        case .related: return (4, 0)
        case .new: return (8, 0)
        case .untracked: return (64, 0)
        case .snat: return (0, 0x10) // IPS_SRC_NAT
        case .dnat: return (0, 0x20) // IPS_DST_NAT
        }
    }

    func conntrack(_ match: ConntrackMatch, refuse: (String) -> EngineError) throws -> [NFTExpr] {
        var state: UInt32 = 0, status: UInt32 = 0
        for item in match.states { let bits = Self.conntrackBits(item); state |= bits.state; status |= bits.status }
        if state != 0 && status != 0 && !match.inverted { throw refuse("--ctstate mixing SNAT/DNAT with other states") }
        // `! --ctstate SNAT` matches packets without a connection (INVALID, UNTRACKED) in
        // xt_conntrack; nf_tables' `ct status` never matches them, negated or not.
        if status != 0 && match.inverted { throw refuse("! --ctstate with SNAT/DNAT (it matches packets without a connection)") }
        var out: [NFTExpr] = []
        for (key, bits) in [(NFT.ctState, state), (NFT.ctStatus, status)] where bits != 0 {
            out += [.ct(key: key, dreg: NFT.reg1), .bitwise(sreg: NFT.reg1, dreg: NFT.reg1, mask: Bytes.host32(bits), xor: Bytes.host32(0)),
                    .cmp(match.inverted ? .eq : .neq, sreg: NFT.reg1, data: Bytes.host32(0))]
        }
        return out
    }

    func setLookup(_ match: SetMatch, family: IPFamily, refuse: (String) -> EngineError) throws -> [NFTExpr] {
        guard let spec = sets[match.name] else {
            throw EngineError(.invalidInput, "set \(match.name) is not a docknfv set; with nftables a rule can match only docknfv's own sets (docknfvctl ipset create)")
        }
        guard spec.family == family else { throw EngineError(.invalidInput, "set \(match.name) holds \(spec.family) elements; the rule is \(family)") }
        guard match.directions.count >= spec.type.dimension else {
            throw EngineError(.invalidInput, "set \(match.name) is \(spec.type.rawValue): --match-set needs \(spec.type.dimension) directions (e.g. src,dst)")
        }
        let offsets: (source: UInt32, destination: UInt32) = family == .v4 ? (12, 16) : (8, 24)
        let address = NFTExpr.payload(base: .network, offset: match.directions[0] == .src ? offsets.source : offsets.destination,
                                      length: UInt32(family.byteCount), dreg: NFT.reg1)
        switch spec.type {
        case .hashNet, .hashIP:
            return [address, .lookup(sreg: NFT.reg1, set: match.name, setID: nil, inverted: match.inverted)]
        case .hashIPPort:
            // address . l4proto . port, each in its own 4-byte register after the address (nft's layout).
            let next = NFT.reg32_00 + UInt32(family.byteCount / 4)
            return [address, .meta(key: NFT.metaL4proto, dreg: next),
                    .payload(base: .transport, offset: match.directions[1] == .src ? 0 : 2, length: 2, dreg: next + 1),
                    .lookup(sreg: NFT.reg1, set: match.name, setID: nil, inverted: match.inverted)]
        case .hashIPMark:
            // address . mark: the packet's mark in the register after the address (the second
            // direction means nothing, as with xt_set).
            let next = NFT.reg32_00 + UInt32(family.byteCount / 4)
            return [address, .meta(key: NFT.metaMark, dreg: next), .lookup(sreg: NFT.reg1, set: match.name, setID: nil, inverted: match.inverted)]
        }
    }

    /// `fib saddr|daddr [. iif|. oif] type`, compared with the RTN_* values (host order): one type
    /// directly, several through an anonymous set of them.
    func addrtype(_ match: AddrTypeMatch, family: IPFamily, sets: inout [AnonymousSet], refuse: (String) -> EngineError) throws -> [NFTExpr] {
        // For IPv4 both ask inet_dev_addr_type(). For IPv6 xt_addrtype tests address classes
        // (UNICAST holds local addresses; every type of a list must hold) where fib yields one
        // route type: the meanings part — except for LOCAL alone, where both ask whether the route
        // to the address is a local one (a port mapping's guard). A local anycast address is the
        // one difference: xt_addrtype counts it as LOCAL, fib as ANYCAST.
        let localOnly = [match.source, match.destination].allSatisfy { $0 == nil || $0!.value == .local } && match.limit == nil
        guard family == .v4 || localOnly else { throw refuse("-m addrtype in an IPv6 rule") }
        let limit = match.limit == .input ? NFT.fibIIF : match.limit == .output ? NFT.fibOIF : 0
        var out: [NFTExpr] = []
        for (selector, address) in [(match.source, NFT.fibSaddr), (match.destination, NFT.fibDaddr)] {
            guard let selector else { continue }
            out.append(.fib(result: NFT.fibResultAddrtype, flags: address | limit, dreg: NFT.reg1))
            let types = selector.value.routeTypes
            if types.count == 1 {
                out.append(.cmp(selector.inverted ? .neq : .eq, sreg: NFT.reg1, data: Bytes.host32(types[0])))
                continue
            }
            sets.append(AnonymousSet(keyType: NFT.typeFibAddr, keyLength: 4, interval: false, hostOrder: true,
                                     ranges: types.map { (Bytes.host32($0), Bytes.host32($0)) }))
            out.append(.lookup(sreg: NFT.reg1, set: "__set%d", setID: UInt32(sets.count - 1), inverted: selector.inverted))
        }
        return out
    }

    /// `meta skuid` / `meta skgid`: host order; a range is compared in network order, as nft does.
    func owner(_ match: OwnerMatch, refuse: (String) -> EngineError) throws -> [NFTExpr] {
        // xt_owner's negations match packets without a socket (forwarded ones in POSTROUTING);
        // nf_tables' `meta skuid` never matches those, negated or not.
        if match.uid?.inverted == true || match.gid?.inverted == true { throw refuse("! --uid-owner or ! --gid-owner (it matches packets without a socket)") }
        if match.socketExists == false { throw refuse("! --socket-exists") }
        // No expression tests for a socket alone; next to an id test the socket test adds nothing
        // (`meta skuid` matches only packets with a socket and its file, as xt_owner's id tests).
        if match.socketExists == true && match.uid == nil && match.gid == nil { throw refuse("--socket-exists") }
        var out: [NFTExpr] = []
        for (selector, key) in [(match.uid, NFT.metaSkuid), (match.gid, NFT.metaSkgid)] {
            guard let ids = selector?.value else { continue }
            out.append(.meta(key: key, dreg: NFT.reg1))
            if ids.lowerBound == ids.upperBound {
                out.append(.cmp(.eq, sreg: NFT.reg1, data: Bytes.host32(ids.lowerBound)))
                continue
            }
            out += [.byteorderHton(sreg: NFT.reg1, dreg: NFT.reg1, length: 4, size: 4),
                    .cmp(.gte, sreg: NFT.reg1, data: Bytes.be32(ids.lowerBound)), .cmp(.lte, sreg: NFT.reg1, data: Bytes.be32(ids.upperBound))]
        }
        return out
    }

    /// iptables' average (1/10000 s units between packets) as nft's rate per unit of time.
    static func limit(_ limit: LimitMatch) -> NFTExpr {
        let average = UInt64(max(limit.average, 1))
        for unit: UInt64 in [1, 60, 3600, 86400] where (10000 * unit) % average == 0 {
            return .limit(rate: 10000 * unit / average, unit: unit, burst: limit.burst)
        }
        return .limit(rate: max(1, 10000 * 86400 / average), unit: 86400, burst: limit.burst)
    }

    // MARK: Targets

    func target(_ target: Target, family: IPFamily, refuse: (String) -> EngineError) throws -> [NFTExpr] {
        switch target {
        case .accept: return [.verdict(.accept)]
        case .drop: return [.verdict(.drop)]
        case .return: return [.verdict(.return)]
        case .jump(let chain): return [.verdict(.jump(chainName(chain)))]
        case .goto(let chain): return [.verdict(.goto(chainName(chain)))]
        case .reject(let type):
            if type.name == "tcp-reset" { return [.reject(type: NFT.rejectTCPReset, code: 0)] }
            // ipt_reject_with / ip6t_reject_with → the ICMP / ICMPv6 code nft_reject sends.
            let v4: [UInt32: UInt8] = [0: 0, 1: 1, 2: 2, 3: 3, 5: 9, 6: 10, 8: 13]
            let v6: [UInt32: UInt8] = [0: 0, 1: 1, 3: 3, 4: 4, 7: 5, 8: 6]
            guard let code = (family == .v4 ? v4 : v6)[type.code] else { throw refuse("REJECT --reject-with \(type.name)") }
            return [.reject(type: NFT.rejectICMP, code: code)]
        case .log(let prefix, let level):
            return [.log(prefix: prefix.isEmpty ? nil : prefix, level: UInt32(level), group: nil, snaplen: nil, threshold: nil)]
        case .nflog(let group, let prefix, let size, let threshold):
            return [.log(prefix: prefix.isEmpty ? nil : prefix, level: nil, group: group, snaplen: size, threshold: threshold)]
        case .dnat(let range): return nat(NFT.natDNAT, range, family: family)
        case .snat(let range): return nat(NFT.natSNAT, range, family: family)
        case .masquerade(let ports, let flags):
            let (immediates, minReg, maxReg) = portRegisters(ports, first: NFT.reg1)
            return immediates + [.masq(protoMin: minReg, protoMax: maxReg, flags: (ports == nil ? 0 : NFT.protoSpecified) | flags.rawValue)]
        case .redirect(let ports, let flags):
            let (immediates, minReg, maxReg) = portRegisters(ports, first: NFT.reg1)
            return immediates + [.redir(protoMin: minReg, protoMax: maxReg, flags: (ports == nil ? 0 : NFT.protoSpecified) | flags.rawValue)]
        case .mark(let value, let mask):
            if mask == 0xffff_ffff { return [.immediate(dreg: NFT.reg1, data: Bytes.host32(value)), .metaSet(key: NFT.metaMark, sreg: NFT.reg1)] }
            return [.meta(key: NFT.metaMark, dreg: NFT.reg1),
                    .bitwise(sreg: NFT.reg1, dreg: NFT.reg1, mask: Bytes.host32(~mask), xor: Bytes.host32(value)),
                    .metaSet(key: NFT.metaMark, sreg: NFT.reg1)]
        case .tcpmss(let mss):
            // `tcp option maxseg size set rt mtu` / `… set N`; the kernel only ever lowers the MSS.
            let load: [NFTExpr] = mss.map { [.immediate(dreg: NFT.reg1, data: Bytes.be16($0))] }
                ?? [.rt(key: NFT.rtTCPMSS, dreg: NFT.reg1), .byteorderHton(sreg: NFT.reg1, dreg: NFT.reg1, length: 2, size: 2)]
            return load + [.tcpOptionWrite(type: 2, offset: 2, length: 2, sreg: NFT.reg1)]
        }
    }

    func nat(_ type: UInt32, _ range: NATRange, family: IPFamily) -> [NFTExpr] {
        var out: [NFTExpr] = []
        var register = NFT.reg1
        var addrMin: UInt32?, addrMax: UInt32?
        if let addresses = range.addresses {
            out.append(.immediate(dreg: register, data: addresses.first.bytes)); addrMin = register; register += 1
            if addresses.last != addresses.first { out.append(.immediate(dreg: register, data: addresses.last.bytes)); addrMax = register; register += 1 }
        }
        let (immediates, protoMin, protoMax) = portRegisters(range.ports, first: register)
        out += immediates
        var flags: UInt32 = (range.addresses == nil ? 0 : NFT.mapIPs) | range.flags.rawValue
        if range.ports != nil { flags |= NFT.protoSpecified }
        out.append(.nat(type: type, family: family == .v4 ? NFT.nfprotoIPv4 : NFT.nfprotoIPv6, addrMin: addrMin, addrMax: addrMax,
                        protoMin: protoMin, protoMax: protoMax, flags: flags))
        return out
    }

    func portRegisters(_ ports: PortRange?, first: UInt32) -> ([NFTExpr], UInt32?, UInt32?) {
        guard let ports else { return ([], nil, nil) }
        var out: [NFTExpr] = [.immediate(dreg: first, data: Bytes.be16(ports.lower))]
        if ports.isSingle { return (out, first, nil) }
        out.append(.immediate(dreg: first + 1, data: Bytes.be16(ports.upper)))
        return (out, first, first + 1)
    }

    /// Sorted, merged inclusive ranges (nf_tables interval sets refuse overlaps).
    static func coalesce(_ ranges: [([UInt8], [UInt8])]) -> [(first: [UInt8], last: [UInt8])] {
        let sorted = ranges.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        var out: [(first: [UInt8], last: [UInt8])] = []
        for (first, last) in sorted {
            if let previous = out.last, let after = Bytes.successor(previous.last), !after.lexicographicallyPrecedes(first) {
                if previous.last.lexicographicallyPrecedes(last) { out[out.count - 1].last = last }
            } else if let previous = out.last, Bytes.successor(previous.last) == nil {
                continue // the previous range already reaches the top
            } else {
                out.append((first, last))
            }
        }
        return out
    }
}
