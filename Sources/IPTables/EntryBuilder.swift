import CNetfilterShim
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// Errors of the libiptc backend. Each names the rule, chain or table concerned.
public enum IPTablesError: Error, Equatable, Sendable, CustomStringConvertible {
    case build(rule: String, reason: String)
    case libiptc(call: String, object: String, message: String, errno: Int32)
    case lockTimeout(path: String, seconds: Double)
    case lock(path: String, errno: Int32)
    case unknownChain(chain: String, rule: String)
    case targetNotAllowed(target: String, table: String, rule: String)
    case foreignReference(chain: String)
    case chainName(chain: String, owner: String, prefix: String, max: Int)
    case policyNotAllowed(chain: String, owner: String)
    case sharedPrefix(prefix: String, owners: [String])

    public var description: String {
        switch self {
        case .build(let rule, let reason): return "rule \"\(rule)\": \(reason)"
        case .libiptc(let call, let object, let message, let errno): return "\(call) for \(object) failed: \(message) (errno \(errno))"
        case .lockTimeout(let path, let seconds): return "another program held \(path) for more than \(seconds)s; nothing was changed"
        case .lock(let path, let errno): return "cannot lock \(path): \(String(cString: strerror(errno)))"
        case .unknownChain(let chain, let rule): return "rule \"\(rule)\": jumps to chain \(chain), which docknfv does not have"
        case .targetNotAllowed(let target, let table, let rule): return "rule \"\(rule)\": target \(target) is not allowed in table \(table)"
        case .foreignReference(let chain): return "chain \(chain) is referenced by a rule docknfv does not own; remove that rule first"
        case .chainName(let chain, let owner, let prefix, let max):
            return "chain \(DisplayText.quoted(chain)) of owner \(owner): x_tables names it \(prefix)<chain> in at most \(ChainNames.maxKernelLength) characters, so at most \(max) letters, digits, -_. (not starting with -)"
        case .policyNotAllowed(let chain, let owner):
            return "owner \(owner) cannot set the policy of \(chain): built-in chains are shared by every owner in x_tables, their policies are docknfvctl's only"
        case .sharedPrefix(let prefix, let owners):
            return "owners \(owners.joined(separator: " and ")) would share the x_tables chains \(prefix)* (their names hash alike); rename one of them"
        }
    }
}

/// The rule's text, rendered only if an error message needs it.
struct LazyText: CustomStringConvertible {
    let rule: Rule
    init(_ rule: Rule) { self.rule = rule }
    var description: String { RuleRenderer.render(rule) }
}

/// Builds the kernel's binary entry for a rule (through the C builder, which owns the layout).
struct EntryBuilder {
    /// Looks up a set's kernel index for `-m set`.
    var setIndex: (String) throws -> UInt16 = { name in
        var index: UInt16 = 0
        guard dnfv_ipset_index(name, &index) == 0 else {
            throw IPTablesError.build(rule: "", reason: "ipset \(name) does not exist (\(String(cString: strerror(errno))))")
        }
        return index
    }

    /// The entry bytes and the name of its target as libiptc reports it (for comparison).
    func build(_ rule: Rule, chainName: (String) -> String) throws -> (bytes: [UInt8], target: String) {
        let text = LazyText(rule)
        let family = rule.family.addressFamily
        guard let entry = dnfv_entry_new(family) else { throw IPTablesError.build(rule: text.description, reason: "out of memory") }
        defer { dnfv_entry_free(entry) }

        func address(_ which: Int32, _ prefix: Negatable<IPPrefix>, _ explicitMask: IPAddress?) {
            // A non-contiguous mask (`/255.0.255.0`) is used as given; else the prefix length's.
            let mask = explicitMask?.bytes ?? IPAddress.zero(prefix.value.family).bytes.indices.map { i -> UInt8 in
                let bits = max(0, min(8, prefix.value.length - i * 8))
                return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            }
            let address = zip(prefix.value.address.bytes, mask).map { $0 & $1 }
            dnfv_entry_set_addr(entry, which, address, mask, prefix.inverted ? 1 : 0)
        }
        if let s = rule.source { address(0, s, rule.sourceMask) }
        if let d = rule.destination { address(1, d, rule.destinationMask) }
        for (which, iface) in [(Int32(0), rule.inInterface), (1, rule.outInterface)] {
            guard let iface else { continue }
            guard dnfv_entry_set_iface(entry, which, iface.value, iface.inverted ? 1 : 0) == 0 else {
                throw IPTablesError.build(rule: text.description, reason: "interface name \(iface.value) is too long")
            }
        }
        if let p = rule.proto { dnfv_entry_set_proto(entry, UInt16(p.value), p.inverted ? 1 : 0) }

        for match in rule.matches { try add(match, to: entry, rule: rule, text: text) }
        let targetName = try setTarget(rule.target, on: entry, rule: rule, text: text, chainName: chainName)

        var size = 0
        guard let raw = dnfv_entry_bytes(entry, &size) else { throw IPTablesError.build(rule: text.description, reason: "out of memory") }
        return (Array(UnsafeRawBufferPointer(start: raw, count: size)), targetName)
    }

    /// A kernel struct of type `T` filled by `fill` in zeroed memory: the fields it sets and zero
    /// everywhere else, padding included. A Swift value of an imported C struct leaves its padding
    /// undefined (stack garbage), and a copy of it need not keep it; the kernel stores the payload
    /// as given, so garbage there made identical rules compare unequal (false drift, needless commits).
    /// `fill` must set fields one by one, never assign a whole struct value.
    static func payload<T>(_ type: T.Type, _ fill: (inout T) throws -> Void) rethrows -> [UInt8] {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        let typed = raw.bindMemory(to: T.self, capacity: 1)
        defer { typed.deinitialize(count: 1) }
        try fill(&typed.pointee)
        return Array(UnsafeRawBufferPointer(start: raw, count: MemoryLayout<T>.size))
    }

    private func add<T>(_ entry: OpaquePointer, _ name: String, _ revision: UInt8, _ type: T.Type, text: LazyText,
                        _ fill: (inout T) throws -> Void) throws {
        let bytes = try Self.payload(type, fill)
        let rc = bytes.withUnsafeBytes { dnfv_entry_add_match(entry, name, revision, $0.baseAddress, $0.count) }
        guard rc == 0 else { throw IPTablesError.build(rule: text.description, reason: "cannot add match \(name)") }
    }

    private func add(_ match: Match, to entry: OpaquePointer, rule: Rule, text: LazyText) throws {
        switch match {
        case .tcp(let tcp):
            try add(entry, "tcp", 0, xt_tcp.self, text: text) { info in
                info.spts = ports(tcp.sourcePorts?.value)
                info.dpts = ports(tcp.destinationPorts?.value)
                if tcp.sourcePorts?.inverted == true { info.invflags |= UInt8(XT_TCP_INV_SRCPT) }
                if tcp.destinationPorts?.inverted == true { info.invflags |= UInt8(XT_TCP_INV_DSTPT) }
                if let flags = tcp.flags {
                    info.flg_mask = flags.value.mask
                    info.flg_cmp = flags.value.compare
                    if flags.inverted { info.invflags |= UInt8(XT_TCP_INV_FLAGS) }
                }
            }
        case .udp(let udp):
            try add(entry, "udp", 0, xt_udp.self, text: text) { info in
                info.spts = ports(udp.sourcePorts?.value)
                info.dpts = ports(udp.destinationPorts?.value)
                if udp.sourcePorts?.inverted == true { info.invflags |= UInt8(XT_UDP_INV_SRCPT) }
                if udp.destinationPorts?.inverted == true { info.invflags |= UInt8(XT_UDP_INV_DSTPT) }
            }
        case .icmp(let icmp), .icmp6(let icmp):
            let name = { if case .icmp = match { return "icmp" } else { return "icmp6" } }()
            try add(entry, name, 0, dnfv_icmp.self, text: text) { info in
                info.type = icmp.type
                info.code = (icmp.codes.lowerBound, icmp.codes.upperBound)
                info.invflags = icmp.inverted ? 1 : 0
            }
        case .multiport(let mp):
            var slots: [(UInt16, UInt8)] = []
            for range in mp.ports {
                if range.isSingle { slots.append((range.lower, 0)) } else { slots.append((range.lower, 1)); slots.append((range.upper, 0)) }
            }
            try add(entry, "multiport", 1, xt_multiport_v1.self, text: text) { info in
                info.flags = UInt8(mp.direction == .source ? XT_MULTIPORT_SOURCE.rawValue
                                   : mp.direction == .destination ? XT_MULTIPORT_DESTINATION.rawValue : XT_MULTIPORT_EITHER.rawValue)
                info.count = UInt8(slots.count)
                withUnsafeMutableBytes(of: &info.ports) { raw in
                    let ports = raw.bindMemory(to: UInt16.self)
                    for (i, slot) in slots.enumerated() { ports[i] = slot.0 }
                }
                withUnsafeMutableBytes(of: &info.pflags) { raw in
                    for (i, slot) in slots.enumerated() { raw[i] = slot.1 }
                }
                info.invert = mp.inverted ? 1 : 0
            }
        case .conntrack(let ct):
            try add(entry, "conntrack", 3, xt_conntrack_mtinfo3.self, text: text) { info in
                info.match_flags = UInt16(XT_CONNTRACK_STATE)
                info.state_mask = ct.states.reduce(0) { $0 | $1.bit }
                if ct.inverted { info.invert_flags = UInt16(XT_CONNTRACK_STATE) }
            }
        case .mark(let mark):
            try add(entry, "mark", 1, xt_mark_mtinfo1.self, text: text) { info in
                info.mark = mark.value
                info.mask = mark.mask
                info.invert = mark.inverted ? 1 : 0
            }
        case .set(let set):
            // Revision 4, as iptables 1.8 writes it (its tools print no older revision); the
            // packet/byte counter conditions stay "none".
            let index: UInt16
            do { index = try setIndex(set.name) } catch let IPTablesError.build(_, reason) {
                throw IPTablesError.build(rule: text.description, reason: reason)
            }
            try add(entry, "set", 4, xt_set_info_match_v4.self, text: text) { info in
                info.match_set.index = index
                info.match_set.dim = UInt8(set.directions.count)
                for (i, direction) in set.directions.enumerated() where direction == .src {
                    info.match_set.flags |= UInt8(1 << (i + 1))
                }
                if set.inverted { info.match_set.flags |= 1 }
            }
        case .comment(let comment):
            try add(entry, "comment", 0, xt_comment_info.self, text: text) { info in
                withUnsafeMutableBytes(of: &info.comment) { raw in
                    for (i, byte) in comment.utf8.prefix(255).enumerated() { raw[i] = byte }
                }
            }
        case .limit(let limit):
            try add(entry, "limit", 0, xt_rateinfo.self, text: text) { info in
                info.avg = limit.average
                info.burst = limit.burst
            }
        case .iprange(let range):
            try add(entry, "iprange", 1, xt_iprange_mtinfo.self, text: text) { info in
                if let s = range.source {
                    info.src_min = inetAddr(s.value.first); info.src_max = inetAddr(s.value.last)
                    info.flags |= UInt8(IPRANGE_SRC) | (s.inverted ? UInt8(IPRANGE_SRC_INV) : 0)
                }
                if let d = range.destination {
                    info.dst_min = inetAddr(d.value.first); info.dst_max = inetAddr(d.value.last)
                    info.flags |= UInt8(IPRANGE_DST) | (d.inverted ? UInt8(IPRANGE_DST_INV) : 0)
                }
            }
        case .addrtype(let addrtype):
            // Revision 1 (revision 0 is IPv4 only and has no interface limits).
            try add(entry, "addrtype", 1, xt_addrtype_info_v1.self, text: text) { info in
                if let s = addrtype.source {
                    info.source = s.value.rawValue
                    if s.inverted { info.flags |= UInt32(XT_ADDRTYPE_INVERT_SOURCE) }
                }
                if let d = addrtype.destination {
                    info.dest = d.value.rawValue
                    if d.inverted { info.flags |= UInt32(XT_ADDRTYPE_INVERT_DEST) }
                }
                switch addrtype.limit {
                case .input: info.flags |= UInt32(XT_ADDRTYPE_LIMIT_IFACE_IN)
                case .output: info.flags |= UInt32(XT_ADDRTYPE_LIMIT_IFACE_OUT)
                case nil: break
                }
            }
        case .owner(let owner):
            try add(entry, "owner", 1, xt_owner_match_info.self, text: text) { info in
                func flag(_ bit: UInt8, inverted: Bool) {
                    info.match |= bit
                    if inverted { info.invert |= bit }
                }
                if let uid = owner.uid {
                    info.uid_min = uid.value.lowerBound; info.uid_max = uid.value.upperBound
                    flag(UInt8(XT_OWNER_UID), inverted: uid.inverted)
                }
                if let gid = owner.gid {
                    info.gid_min = gid.value.lowerBound; info.gid_max = gid.value.upperBound
                    flag(UInt8(XT_OWNER_GID), inverted: gid.inverted)
                }
                if let exists = owner.socketExists { flag(UInt8(XT_OWNER_SOCKET), inverted: !exists) }
            }
        }
    }

    private func setTarget<T>(_ entry: OpaquePointer, _ name: String, _ revision: UInt8, _ type: T.Type, text: LazyText,
                              _ fill: (inout T) throws -> Void) throws {
        let bytes = try Self.payload(type, fill)
        let rc = bytes.withUnsafeBytes { dnfv_entry_set_target(entry, name, revision, $0.baseAddress, $0.count) }
        guard rc == 0 else { throw IPTablesError.build(rule: text.description, reason: "cannot set target \(name)") }
    }

    private func setTarget(_ target: Target, on entry: OpaquePointer, rule: Rule, text: LazyText, chainName: (String) -> String) throws -> String {
        func standard(_ name: String) throws -> String {
            guard dnfv_entry_set_target(entry, name, 0, nil, 0) == 0 else { throw IPTablesError.build(rule: text.description, reason: "bad target \(name)") }
            return name
        }
        switch target {
        case .accept: return try standard("ACCEPT")
        case .drop: return try standard("DROP")
        case .return: return try standard("RETURN")
        case .jump(let chain): return try standard(chainName(chain))
        case .goto(let chain):
            dnfv_entry_set_goto(entry)
            return try standard(chainName(chain))
        case .reject(let type):
            try setTarget(entry, "REJECT", 0, dnfv_reject.self, text: text) { $0.with = type.code }
            return "REJECT"
        case .log(let prefix, let level):
            try setTarget(entry, "LOG", 0, xt_log_info.self, text: text) { info in
                info.level = level
                withUnsafeMutableBytes(of: &info.prefix) { raw in for (i, b) in prefix.utf8.prefix(29).enumerated() { raw[i] = b } }
            }
            return "LOG"
        case .nflog(let group, let prefix, let size, let threshold):
            try setTarget(entry, "NFLOG", 0, xt_nflog_info.self, text: text) { info in
                info.group = group
                info.threshold = threshold
                if let size { info.len = size; info.flags = UInt16(XT_NFLOG_F_COPY_LEN) }
                withUnsafeMutableBytes(of: &info.prefix) { raw in for (i, b) in prefix.utf8.prefix(63).enumerated() { raw[i] = b } }
            }
            return "NFLOG"
        case .dnat(let range), .snat(let range):
            var flags = range.flags.rawValue
            if range.addresses != nil { flags |= UInt32(NF_NAT_RANGE_MAP_IPS) }
            if range.ports != nil { flags |= UInt32(NF_NAT_RANGE_PROTO_SPECIFIED) }
            // Ports are network order in NAT ranges.
            let minPort = range.ports.map { $0.lower.bigEndian } ?? 0, maxPort = range.ports.map { $0.upper.bigEndian } ?? 0
            if case .dnat = target {
                try setTarget(entry, "DNAT", 2, nf_nat_range2.self, text: text) { info in
                    info.flags = flags
                    if let addresses = range.addresses {
                        info.min_addr = inetAddr(addresses.first)
                        info.max_addr = inetAddr(addresses.last)
                    }
                    info.min_proto.all = minPort
                    info.max_proto.all = maxPort
                }
                return "DNAT"
            }
            // iptables 1.8's libxt_SNAT prints only revision 0 (IPv4) and 1 (IPv6), not 2: with
            // revision 2 `iptables -S` would show "[unsupported revision]".
            if rule.family == .v4 {
                try setTarget(entry, "SNAT", 0, nf_nat_ipv4_multi_range_compat.self, text: text) { compat in
                    compat.rangesize = 1
                    compat.range.flags = flags
                    if let addresses = range.addresses {
                        // __be32: the address bytes exactly as they are, in network order.
                        compat.range.min_ip = addresses.first.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
                        compat.range.max_ip = addresses.last.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
                    }
                    compat.range.min.all = minPort
                    compat.range.max.all = maxPort
                }
                return "SNAT"
            }
            try setTarget(entry, "SNAT", 1, nf_nat_range.self, text: text) { range1 in
                range1.flags = flags
                if let addresses = range.addresses {
                    range1.min_addr = inetAddr(addresses.first)
                    range1.max_addr = inetAddr(addresses.last)
                }
                range1.min_proto.all = minPort
                range1.max_proto.all = maxPort
            }
            return "SNAT"
        case .masquerade(let ports, let flags), .redirect(let ports, let flags):
            let name = { if case .masquerade = target { return "MASQUERADE" } else { return "REDIRECT" } }()
            let rangeFlags = (ports == nil ? 0 : UInt32(NF_NAT_RANGE_PROTO_SPECIFIED)) | flags.rawValue
            let minPort = ports.map { $0.lower.bigEndian } ?? 0, maxPort = ports.map { $0.upper.bigEndian } ?? 0
            if rule.family == .v4 {
                try setTarget(entry, name, 0, nf_nat_ipv4_multi_range_compat.self, text: text) { info in
                    info.rangesize = 1
                    info.range.flags = rangeFlags
                    info.range.min.all = minPort
                    info.range.max.all = maxPort
                }
            } else {
                try setTarget(entry, name, 0, nf_nat_range.self, text: text) { info in
                    info.flags = rangeFlags
                    info.min_proto.all = minPort
                    info.max_proto.all = maxPort
                }
            }
            return name
        case .mark(let value, let mask):
            try setTarget(entry, "MARK", 2, xt_mark_tginfo2.self, text: text) { info in
                info.mark = value
                info.mask = mask
            }
            return "MARK"
        case .tcpmss(let mss):
            try setTarget(entry, "TCPMSS", 0, xt_tcpmss_info.self, text: text) { $0.mss = mss ?? UInt16(XT_TCPMSS_CLAMP_PMTU) }
            return "TCPMSS"
        }
    }

    /// Port ranges are host byte order in tcp/udp matches.
    private func ports(_ range: PortRange?) -> (UInt16, UInt16) {
        let range = range ?? .any
        return (range.lower, range.upper)
    }

    private func inetAddr(_ address: IPAddress) -> nf_inet_addr {
        var value = nf_inet_addr()
        withUnsafeMutableBytes(of: &value) { raw in for (i, b) in address.bytes.enumerated() { raw[i] = b } }
        return value
    }
}
