import CLibNFTNL
import RuleEngine

/// What one of docknfv's nf_tables tables holds, read with netlink dumps.
struct Snapshot: Sendable {
    struct Chain: Equatable, Sendable {
        var base: Layout.BaseChain?
        var policy: UInt32?
    }
    struct KernelRule: Equatable, Sendable {
        var handle: UInt64
        var fingerprint: UInt64?
    }
    struct KernelSet: Sendable {
        var shape: SetShape
        /// What the kernel holds: read from it, or (`spec`) known from docknfv's last change.
        var read: [(first: [UInt8], last: [UInt8])]?
        var spec: SetSpec?
        var ranges: [(first: [UInt8], last: [UInt8])] { read ?? spec.map(SetShape.ranges) ?? [] }
    }

    var tableExists = false
    var chains: [String: Chain] = [:]
    var rules: [String: [KernelRule]] = [:]
    var sets: [String: KernelSet] = [:]
}

extension Snapshot {
    /// What the kernel holds when it holds exactly `ruleset` (handles unknown: 0).
    init(_ ruleset: Ruleset, family: IPFamily) {
        let table = DesiredTable(ruleset, family: family)
        tableExists = !table.isEmpty
        chains = table.chains
        rules = table.rules.mapValues { $0.map { KernelRule(handle: 0, fingerprint: $0.fingerprint) } }
        sets = table.sets.mapValues { KernelSet(shape: $0.shape, read: nil, spec: $0.spec) }
    }
}

extension NFNetlink {
    func snapshot(family: IPFamily, table: String) throws -> Snapshot {
        var snapshot = Snapshot()
        let nfproto = NFT.family(family)
        try request(type: UInt16(NFT_MSG_GETTABLE.rawValue), family: nfproto, flags: 0, build: { nlh in
            mnl_attr_put_strz(nlh, UInt16(NFTA_TABLE_NAME.rawValue), table)
        }) { _ in snapshot.tableExists = true }
        guard snapshot.tableExists else { return snapshot }

        try request(type: UInt16(NFT_MSG_GETCHAIN.rawValue), family: nfproto, flags: UInt16(NLM_F_DUMP), build: { nlh in
            mnl_attr_put_strz(nlh, UInt16(NFTA_CHAIN_TABLE.rawValue), table)
        }) { nlh in
            guard let chain = nftnl_chain_alloc() else { return }
            defer { nftnl_chain_free(chain) }
            guard nftnl_chain_nlmsg_parse(nlh, chain) >= 0, String(cString: nftnl_chain_get_str(chain, UInt16(NFTNL_CHAIN_TABLE.rawValue))) == table else { return }
            let name = String(cString: nftnl_chain_get_str(chain, UInt16(NFTNL_CHAIN_NAME.rawValue)))
            var info = Snapshot.Chain()
            if nftnl_chain_is_set(chain, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue)) {
                let type = nftnl_chain_get_str(chain, UInt16(NFTNL_CHAIN_TYPE.rawValue)).map { String(cString: $0) } ?? "filter"
                info.base = Layout.BaseChain(type: type, hook: nftnl_chain_get_u32(chain, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue)),
                                             priority: nftnl_chain_get_s32(chain, UInt16(NFTNL_CHAIN_PRIO.rawValue)))
                if nftnl_chain_is_set(chain, UInt16(NFTNL_CHAIN_POLICY.rawValue)) { info.policy = nftnl_chain_get_u32(chain, UInt16(NFTNL_CHAIN_POLICY.rawValue)) }
            }
            snapshot.chains[name] = info
        }

        snapshot.rules = try rules(family: family, table: table)

        var setNames: [(String, SetShape)] = []
        try request(type: UInt16(NFT_MSG_GETSET.rawValue), family: nfproto, flags: UInt16(NLM_F_DUMP), build: { nlh in
            mnl_attr_put_strz(nlh, UInt16(NFTA_SET_TABLE.rawValue), table)
        }) { nlh in
            guard let set = nftnl_set_alloc() else { return }
            defer { nftnl_set_free(set) }
            guard nftnl_set_nlmsg_parse(nlh, set) >= 0, String(cString: nftnl_set_get_str(set, UInt16(NFTNL_SET_TABLE.rawValue))) == table else { return }
            let flags = nftnl_set_is_set(set, UInt16(NFTNL_SET_FLAGS.rawValue)) ? nftnl_set_get_u32(set, UInt16(NFTNL_SET_FLAGS.rawValue)) : 0
            guard flags & NFT.setAnonymous == 0 else { return } // a rule's own set (multiport, addrtype), not a named one
            setNames.append((String(cString: nftnl_set_get_str(set, UInt16(NFTNL_SET_NAME.rawValue))),
                             SetShape(keyType: nftnl_set_get_u32(set, UInt16(NFTNL_SET_KEY_TYPE.rawValue)),
                                      keyLength: nftnl_set_get_u32(set, UInt16(NFTNL_SET_KEY_LEN.rawValue)), interval: flags & NFT.setInterval != 0)))
        }
        for (name, shape) in setNames {
            var keys: [(key: [UInt8], end: Bool)] = []
            try request(type: UInt16(NFT_MSG_GETSETELEM.rawValue), family: nfproto, flags: UInt16(NLM_F_DUMP), build: { nlh in
                mnl_attr_put_strz(nlh, UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), table)
                mnl_attr_put_strz(nlh, UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), name)
            }) { nlh in
                guard let set = nftnl_set_alloc() else { return }
                defer { nftnl_set_free(set) }
                guard nftnl_set_elems_nlmsg_parse(nlh, set) >= 0, let iterator = nftnl_set_elems_iter_create(set) else { return }
                defer { nftnl_set_elems_iter_destroy(iterator) }
                // libnftnl's iterator hands out the current element and then advances.
                while let current = nftnl_set_elems_iter_next(iterator) {
                    var length: UInt32 = 0
                    if let key = nftnl_set_elem_get(current, UInt16(NFTNL_SET_ELEM_KEY), &length) {
                        // nftnl_set_elem_get_u32 dereferences an absent attribute: ask first.
                        let end = nftnl_set_elem_is_set(current, UInt16(NFTNL_SET_ELEM_FLAGS))
                            && nftnl_set_elem_get_u32(current, UInt16(NFTNL_SET_ELEM_FLAGS)) & NFT.elemIntervalEnd != 0
                        keys.append((Array(UnsafeRawBufferPointer(start: key, count: Int(length))), end))
                    }
                }
            }
            snapshot.sets[name] = Snapshot.KernelSet(shape: shape, read: Self.ranges(keys, interval: shape.interval), spec: nil)
        }
        return snapshot
    }

    /// The rules' handles and fingerprints, per chain: of the whole table, or of one chain (a
    /// dump the kernel filters).
    func rules(family: IPFamily, table: String, chain only: String? = nil) throws -> [String: [Snapshot.KernelRule]] {
        var out: [String: [Snapshot.KernelRule]] = [:]
        try request(type: UInt16(NFT_MSG_GETRULE.rawValue), family: NFT.family(family), flags: UInt16(NLM_F_DUMP), build: { nlh in
            mnl_attr_put_strz(nlh, UInt16(NFTA_RULE_TABLE.rawValue), table)
            if let only { mnl_attr_put_strz(nlh, UInt16(NFTA_RULE_CHAIN.rawValue), only) }
        }) { nlh in
            // Only the chain, handle and user data are needed: read those attributes directly
            // rather than decoding every expression of every rule.
            var chain: String?, handle: UInt64?, fingerprint: UInt64?, inTable = false
            Self.attributes(nlh) { type, payload in
                switch Int(type) {
                case Int(NFTA_RULE_TABLE.rawValue): inTable = Self.string(payload) == table
                case Int(NFTA_RULE_CHAIN.rawValue): chain = Self.string(payload)
                case Int(NFTA_RULE_HANDLE.rawValue) where payload.count == 8:
                    handle = payload.reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
                case Int(NFTA_RULE_USERDATA.rawValue): fingerprint = RuleUserData.fingerprint(in: payload)
                default: break
                }
            }
            if inTable, let chain, let handle, only == nil || chain == only { out[chain, default: []].append(.init(handle: handle, fingerprint: fingerprint)) }
        }
        return out
    }

    /// Interval sets hold a start key per range and an end key one past its last; pair them up.
    static func ranges(_ keys: [(key: [UInt8], end: Bool)], interval: Bool) -> [(first: [UInt8], last: [UInt8])] {
        let sorted = keys.sorted { $0.key.lexicographicallyPrecedes($1.key) || ($0.key == $1.key && $0.end && !$1.end) }
        guard interval else { return sorted.map { ($0.key, $0.key) } }
        var out: [(first: [UInt8], last: [UInt8])] = []
        var open: [UInt8]?
        for (key, end) in sorted {
            if end {
                if let start = open { out.append((start, Self.predecessor(key))); open = nil }
            } else {
                if let start = open { out.append((start, Self.predecessor(key))) } // defensive: unterminated range
                open = key
            }
        }
        if let start = open { out.append((start, [UInt8](repeating: 0xff, count: start.count))) }
        return out
    }

    static func predecessor(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        for index in out.indices.reversed() {
            if out[index] == 0 { out[index] = 0xff } else { out[index] -= 1; return out }
        }
        return out
    }

    static func string(_ payload: UnsafeRawBufferPointer) -> String {
        String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Calls `body` with each top-level attribute (type, payload) of an nf_tables message.
    static func attributes(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ body: (UInt16, UnsafeRawBufferPointer) -> Void) {
        let total = Int(nlh.pointee.nlmsg_len)
        let base = UnsafeRawPointer(nlh)
        var offset = 16 + 4 // nlmsghdr, nfgenmsg
        while offset + 4 <= total {
            let length = Int(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = base.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff
            guard length >= 4, offset + length <= total else { return }
            body(type, UnsafeRawBufferPointer(start: base + offset + 4, count: length - 4))
            offset += (length + 3) & ~3
        }
    }
}
