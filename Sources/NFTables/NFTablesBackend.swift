import CLibNFTNL
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// The native nftables backend: docknfv's rules in its own nf_tables tables, written in process
/// through libnftnl over one netlink socket. Every change is one batch — atomic across tables and
/// families — holding only what differs (a rule by handle, a set element), and sent only if
/// nobody changed the ruleset since it was read.
public struct NFTablesBackend: RuleBackend {
    public var kind: BackendKind { .nftables }
    public var name: String { "nftables through libnftnl (tables ip/ip6 \(Layout.tableName(.cli)))" }
    /// Batches that lost a race with another writer are re-planned from a fresh read this often.
    public var retries = 5
    /// Runs between planning and sending each batch (tests use it to commit something else first).
    public var beforeCommit: (@Sendable (_ attempt: Int) -> Void)?
    /// A socket kept open across changes (a daemon's); nil: one socket per change.
    public var session: NFTablesSession?

    public init(session: NFTablesSession? = nil) { self.session = session }

    public func validate(_ desired: Ruleset) throws {
        try desired.validate()
        for table in desired.tables {
            let translator = Translator(chainName: { Layout.chainName(table.table, $0) }, sets: desired.sets)
            for entries in table.entries.values { for entry in entries where !entry.trusted { _ = try translator.translate(try entry.rule()) } }
        }
    }

    public func apply(_ desired: Ruleset, previous: Ruleset) throws -> ApplyReport {
        try desired.validate()
        guard let session else { return try apply(desired, previous: previous, netlink: try NFNetlink()) }
        return try session.using { netlink in try apply(desired, previous: previous, netlink: netlink) }
    }

    func apply(_ desired: Ruleset, previous: Ruleset, netlink: NFNetlink) throws -> ApplyReport {
        let table = Layout.tableName(desired.owner)
        var attempt = 0
        let namespace = netlink.namespaceIdentity
        while true {
            let generation = try netlink.generation()
            var plans: [(IPFamily, [Operation])] = []
            var usedMark = false
            var handlesRead: [String] = []
            // Nobody committed anything since our last change: the kernel holds `previous`
            // exactly, so plan against it without reading the kernel back — except the rule
            // handles a delete or an insert needs, read from the chains concerned only.
            if attempt == 0, let mark = previous.kernelMark, mark == KernelMark(namespace: namespace, generation: generation) {
                plans = try [IPFamily.v4, .v6].map { family in
                    let want = DesiredTable(desired, family: family)
                    var known = Snapshot(previous, family: family)
                    var plan = Planner.plan(want, known)
                    // Handles only the kernel knows: read those of the chains that need them.
                    let chains = Set(plan.compactMap(\.chainNeedingHandle))
                    guard !chains.isEmpty else { return (family, plan) }
                    for chain in chains.sorted() {
                        known.rules[chain] = try netlink.rules(family: family, table: table, chain: chain)[chain] ?? []
                        handlesRead.append(chain)
                    }
                    plan = Planner.plan(want, known)
                    return (family, plan)
                }
                usedMark = true
            }
            if plans.isEmpty {
                for family in [IPFamily.v4, .v6] {
                    let current = try netlink.snapshot(family: family, table: table)
                    plans.append((family, Planner.plan(DesiredTable(desired, family: family), current)))
                }
            }
            var report = Self.report(plans, desired: desired, previous: previous)
            report.kernelRead = !usedMark
            report.handlesRead = usedMark ? handlesRead : []
            if plans.allSatisfy({ $0.1.isEmpty }) {
                report.kernelMark = KernelMark(namespace: namespace, generation: generation)
                return report
            }
            let batch = Batch(sequence: netlink.nextSequence())
            var builder = BatchBuilder(batch: batch, table: table, sets: desired.sets)
            for (family, operations) in plans { try builder.add(operations, family: family) }
            for _ in 0..<batch.count { _ = netlink.nextSequence() }
            beforeCommit?(attempt)
            guard let failure = try netlink.commit(batch, generation: generation) else {
                report.kernelMark = (try? netlink.generation()).map { KernelMark(namespace: namespace, generation: $0) }
                return report
            }
            attempt += 1
            if failure.code == ERESTART && attempt < retries { report = ApplyReport(); continue }
            throw Self.error(failure, batch: batch)
        }
    }

    public func append(_ rules: [AppendedRule], owner: Owner, sets: [String: SetSpec], mark: KernelMark?) throws -> ApplyReport? {
        guard let mark, !rules.isEmpty else { return nil }
        guard let session else { return try append(rules, owner: owner, sets: sets, mark: mark, netlink: try NFNetlink()) }
        return try session.using { netlink in try append(rules, owner: owner, sets: sets, mark: mark, netlink: netlink) }
    }

    /// One batch of rule additions at the chains' ends (no handle needed), sent only if the
    /// generation is still the one the mark recorded; a lost race returns nil.
    func append(_ rules: [AppendedRule], owner: Owner, sets: [String: SetSpec], mark: KernelMark, netlink: NFNetlink) throws -> ApplyReport? {
        let namespace = netlink.namespaceIdentity
        let generation = try netlink.generation()
        guard mark == KernelMark(namespace: namespace, generation: generation) else { return nil }
        let batch = Batch(sequence: netlink.nextSequence())
        var builder = BatchBuilder(batch: batch, table: Layout.tableName(owner), sets: sets)
        for family in [IPFamily.v4, .v6] {
            let operations = rules.filter { $0.key.family == family }.map { rule in
                Operation.addRule(chain: Layout.chainName(rule.key.table, rule.chain),
                                  rule: DesiredTable.DesiredRule(fingerprint: Fingerprint.of(rule.entry), entry: rule.entry, table: rule.key.table, index: 0),
                                  position: .end)
            }
            try builder.add(operations, family: family)
        }
        for _ in 0..<batch.count { _ = netlink.nextSequence() }
        beforeCommit?(0)
        if let failure = try netlink.commit(batch, generation: generation) {
            // Someone committed meanwhile, or the chain is not there after all (a mark that
            // matched by chance): the whole path reads the kernel and plans from what it holds.
            if failure.code == ERESTART || failure.code == ENOENT { return nil }
            throw Self.error(failure, batch: batch)
        }
        var report = ApplyReport()
        report.kernelRead = false
        report.committed = Set(rules.map(\.key)).sorted()
        report.kernelMark = (try? netlink.generation()).map { KernelMark(namespace: namespace, generation: $0) }
        return report
    }

    /// The inode of the current thread's network namespace (its identity while it exists; kernel
    /// marks use the socket's `namespaceIdentity`, which is never reused).
    static func namespaceInode() -> UInt64 {
        var info = stat()
        return stat("/proc/thread-self/ns/net", &info) == 0 ? UInt64(info.st_ino) : 0
    }

    public func check(_ desired: Ruleset) throws -> [(TableKey, TableDrift)] {
        try desired.validate()
        let netlink = try NFNetlink()
        var drift: [TableKey: TableDrift] = [:]
        for table in desired.tables { drift[table.key] = TableDrift() }
        for family in [IPFamily.v4, .v6] {
            let table = Layout.tableName(desired.owner)
            let current = try netlink.snapshot(family: family, table: table)
            for (key, item) in Planner.drift(Planner.plan(DesiredTable(desired, family: family), current), family: family, table: table) {
                drift[key, default: TableDrift()].items.append(item)
            }
        }
        return drift.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    public func remove(_ previous: Ruleset) throws -> Bool {
        let report = try apply(Ruleset(owner: previous.owner), previous: previous)
        return report.changedAnything
    }

    public func namespaceHoldsRules() -> Bool {
        guard let netlink = try? NFNetlink() else { return false }
        var any = false
        for family in [UInt16(NFPROTO_IPV4), UInt16(NFPROTO_IPV6), UInt16(NFPROTO_INET)] {
            try? netlink.request(type: UInt16(NFT_MSG_GETTABLE.rawValue), family: family, flags: UInt16(NLM_F_DUMP), build: { _ in }) { _ in any = true }
        }
        return any
    }

    /// The names of every nf_tables table in the namespace ("ip docknfv", "inet filter"…).
    public static func tables() -> [String] {
        guard let netlink = try? NFNetlink() else { return [] }
        var out: [String] = []
        try? netlink.request(type: UInt16(NFT_MSG_GETTABLE.rawValue), family: UInt16(NFPROTO_UNSPEC), flags: UInt16(NLM_F_DUMP), build: { _ in }) { nlh in
            let family = mnl_nlmsg_get_payload(nlh).load(as: UInt8.self)
            var name = ""
            NFNetlink.attributes(nlh) { type, payload in if Int(type) == Int(NFTA_TABLE_NAME.rawValue) { name = NFNetlink.string(payload) } }
            let names: [UInt8: String] = [1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"]
            out.append("\(names[family] ?? String(family)) \(name)")
        }
        return out
    }

    static func report(_ plans: [(IPFamily, [Operation])], desired: Ruleset, previous: Ruleset) -> ApplyReport {
        var report = ApplyReport()
        var changed = Set<TableKey>(), sets = Set<String>()
        for (family, operations) in plans {
            for operation in operations {
                switch operation {
                case .addChain(let chain, _), .setPolicy(let chain, _), .deleteChain(let chain), .deleteRule(let chain, _), .addRule(let chain, _, _):
                    if let (table, _) = Layout.split(chain) { changed.insert(TableKey(family, table)) }
                case .addSet(let name, _), .deleteSet(let name), .addElements(let name, _, _), .deleteElements(let name, _, _):
                    sets.insert(name)
                case .addTable, .deleteTable:
                    break
                }
            }
            if operations.contains(where: { if case .deleteTable = $0 { return true }; return false }) {
                // The whole table goes: every (family, table) the owner had, or at least the family's filter.
                let had = previous.tables.map(\.key).filter { $0.family == family }
                changed.formUnion(had.isEmpty ? [TableKey(family, .filter)] : had)
            }
        }
        report.committed = changed.sorted()
        report.unchanged = Set(desired.tables.map(\.key)).subtracting(changed).sorted()
        report.sets = sets.sorted()
        return report
    }

    static func error(_ failure: (index: Int, code: Int32), batch: Batch) -> EngineError {
        let what = failure.index >= 0 ? batch.descriptions[failure.index] : "the batch"
        let text = String(cString: strerror(failure.code))
        switch failure.code {
        case ERESTART, EAGAIN:
            return EngineError(.busy, "nftables: another program kept changing the ruleset; nothing was changed, try again", cause: KernelErrno(failure.code))
        case EPERM:
            return EngineError(.permission, "nftables refused \(what): \(text) (needs CAP_NET_ADMIN); nothing was changed", cause: KernelErrno(failure.code))
        case EBUSY:
            return EngineError(.conflict, "nftables refused \(what): \(text) (something else refers to it); nothing was changed", cause: KernelErrno(failure.code))
        default:
            return EngineError(.kernel, "nftables refused \(what): \(text); nothing was changed", cause: KernelErrno(failure.code))
        }
    }
}

/// Turns operations into batch messages.
struct BatchBuilder {
    let batch: Batch
    let table: String
    let sets: [String: SetSpec]
    /// Set ids for anonymous sets, unique within the batch.
    var nextSetID: UInt32 = 1

    init(batch: Batch, table: String, sets: [String: SetSpec]) { self.batch = batch; self.table = table; self.sets = sets }

    mutating func add(_ operations: [Operation], family: IPFamily) throws {
        let nfproto = NFT.family(family)
        let create = Int32(NLM_F_CREATE)
        for operation in operations {
            switch operation {
            case .addTable:
                batch.add(NFT_MSG_NEWTABLE, family: nfproto, flags: create, "table \(family) \(table)") { nlh in
                    let t = nftnl_table_alloc()!; defer { nftnl_table_free(t) }
                    _ = nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), table)
                    nftnl_table_nlmsg_build_payload(nlh, t)
                }
            case .deleteTable:
                batch.add(NFT_MSG_DELTABLE, family: nfproto, flags: 0, "deleting table \(family) \(table)") { nlh in
                    let t = nftnl_table_alloc()!; defer { nftnl_table_free(t) }
                    _ = nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), table)
                    nftnl_table_nlmsg_build_payload(nlh, t)
                }
            case .addChain(let name, let chain), .setPolicy(let name, let chain):
                batch.add(NFT_MSG_NEWCHAIN, family: nfproto, flags: create, "chain \(name)") { nlh in
                    let c = nftnl_chain_alloc()!; defer { nftnl_chain_free(c) }
                    _ = nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
                    _ = nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue), name)
                    if let base = chain.base {
                        nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue), base.hook)
                        nftnl_chain_set_s32(c, UInt16(NFTNL_CHAIN_PRIO.rawValue), base.priority)
                        _ = nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TYPE.rawValue), base.type)
                    }
                    if let policy = chain.policy { nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_POLICY.rawValue), policy) }
                    nftnl_chain_nlmsg_build_payload(nlh, c)
                }
            case .deleteChain(let name):
                batch.add(NFT_MSG_DELCHAIN, family: nfproto, flags: 0, "deleting chain \(name)") { nlh in
                    let c = nftnl_chain_alloc()!; defer { nftnl_chain_free(c) }
                    _ = nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
                    _ = nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue), name)
                    nftnl_chain_nlmsg_build_payload(nlh, c)
                }
            case .deleteRule(let chain, let handle):
                batch.add(NFT_MSG_DELRULE, family: nfproto, flags: 0, "deleting rule \(handle) of \(chain)") { nlh in
                    let r = nftnl_rule_alloc()!; defer { nftnl_rule_free(r) }
                    _ = nftnl_rule_set_str(r, UInt16(NFTNL_RULE_TABLE.rawValue), table)
                    _ = nftnl_rule_set_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
                    nftnl_rule_set_u64(r, UInt16(NFTNL_RULE_HANDLE.rawValue), handle)
                    nftnl_rule_nlmsg_build_payload(nlh, r)
                }
            case .addRule(let chain, let desired, let position):
                try addRule(chain: chain, desired, position: position, family: family)
            case .addSet(let name, let shape):
                // The kernel wants an id with every new set, named or not.
                addSet(name: name, shape: shape, id: nextSetID, family: family, anonymous: false)
                nextSetID += 1
            case .deleteSet(let name):
                batch.add(NFT_MSG_DELSET, family: nfproto, flags: 0, "deleting set \(name)") { nlh in
                    let s = nftnl_set_alloc()!; defer { nftnl_set_free(s) }
                    _ = nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
                    _ = nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), name)
                    nftnl_set_nlmsg_build_payload(nlh, s)
                }
            case .addElements(let name, let shape, let ranges):
                elements(NFT_MSG_NEWSETELEM, name: name, id: nil, shape: shape, ranges: ranges, family: family)
            case .deleteElements(let name, let shape, let ranges):
                elements(NFT_MSG_DELSETELEM, name: name, id: nil, shape: shape, ranges: ranges, family: family)
            }
        }
    }

    mutating func addRule(chain: String, _ desired: DesiredTable.DesiredRule, position: Operation.Position, family: IPFamily) throws {
        let translated = try Translator(chainName: { Layout.chainName(desired.table, $0) }, sets: sets).translate(try desired.entry.rule())
        var setIDs: [UInt32] = []
        for anonymous in translated.anonymousSets {
            let id = nextSetID; nextSetID += 1; setIDs.append(id)
            let shape = SetShape(keyType: anonymous.keyType, keyLength: anonymous.keyLength, interval: anonymous.interval)
            addSet(name: "__set%d", shape: shape, id: id, family: family, anonymous: true, hostOrderKeys: anonymous.hostOrder)
            elements(NFT_MSG_NEWSETELEM, name: "__set%d", id: id, shape: shape, ranges: anonymous.ranges, family: family)
        }
        var flags = Int32(NLM_F_CREATE)
        // NLM_F_APPEND: after the position's rule (or at the end); without it, before that rule.
        if case .before = position {} else { flags |= Int32(NLM_F_APPEND) }
        let table = self.table
        batch.add(NFT_MSG_NEWRULE, family: NFT.family(family), flags: flags, "rule -A \(Layout.split(chain)?.1 ?? chain) \(desired.entry.text)") { nlh in
            let r = nftnl_rule_alloc()!; defer { nftnl_rule_free(r) }
            _ = nftnl_rule_set_str(r, UInt16(NFTNL_RULE_TABLE.rawValue), table)
            _ = nftnl_rule_set_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
            switch position {
            case .end: break
            case .after(let handle), .before(let handle): nftnl_rule_set_u64(r, UInt16(NFTNL_RULE_POSITION.rawValue), handle)
            }
            ExprEncoder.add(translated.expressions, to: r, anonymousSetIDs: setIDs)
            let userdata = RuleUserData.encode(comment: translated.comment, fingerprint: desired.fingerprint)
            _ = userdata.withUnsafeBytes { nftnl_rule_set_data(r, UInt16(NFTNL_RULE_USERDATA.rawValue), $0.baseAddress, UInt32($0.count)) }
            nftnl_rule_nlmsg_build_payload(nlh, r)
        }
    }

    func addSet(name: String, shape: SetShape, id: UInt32?, family: IPFamily, anonymous: Bool, hostOrderKeys: Bool = false) {
        let table = self.table
        batch.add(NFT_MSG_NEWSET, family: NFT.family(family), flags: Int32(NLM_F_CREATE), anonymous ? "a rule's list" : "set \(name)") { nlh in
            let s = nftnl_set_alloc()!; defer { nftnl_set_free(s) }
            _ = nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
            _ = nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), name)
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_FAMILY.rawValue), UInt32(NFT.family(family)))
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_KEY_TYPE.rawValue), shape.keyType)
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_KEY_LEN.rawValue), shape.keyLength)
            var flags: UInt32 = shape.interval ? NFT.setInterval : 0
            if anonymous { flags |= NFT.setAnonymous | NFT.setConstant }
            nftnl_set_set_u32(s, UInt16(NFTNL_SET_FLAGS.rawValue), flags)
            if let id { nftnl_set_set_u32(s, UInt16(NFTNL_SET_ID.rawValue), id) }
            if hostOrderKeys {
                // nft reads a set's key byte order from its user data (NFTNL_UDATA_SET_KEYBYTEORDER:
                // 1, host order); without it `nft list` shows such keys byte-swapped.
                let userdata: [UInt8] = [0, 4] + Bytes.host32(1)
                _ = userdata.withUnsafeBytes { nftnl_set_set_data(s, UInt16(NFTNL_SET_USERDATA.rawValue), $0.baseAddress, UInt32($0.count)) }
            }
            nftnl_set_nlmsg_build_payload(nlh, s)
        }
    }

    /// Elements in messages of at most 512 ranges (each message must fit the batch's headroom).
    func elements(_ type: nf_tables_msg_types, name: String, id: UInt32?, shape: SetShape, ranges: [(first: [UInt8], last: [UInt8])], family: IPFamily) {
        let table = self.table
        var start = 0
        while start < ranges.count {
            let chunk = ranges[start..<min(start + 512, ranges.count)]
            start += chunk.count
            let verb = type == NFT_MSG_NEWSETELEM ? "adding" : "deleting"
            batch.add(type, family: NFT.family(family), flags: type == NFT_MSG_NEWSETELEM ? Int32(NLM_F_CREATE) : 0,
                      "\(verb) \(chunk.count) element(s) of set \(id == nil ? name : "of a rule's list")") { nlh in
                let s = nftnl_set_alloc()!; defer { nftnl_set_free(s) }
                _ = nftnl_set_set_str(s, UInt16(NFTNL_SET_TABLE.rawValue), table)
                _ = nftnl_set_set_str(s, UInt16(NFTNL_SET_NAME.rawValue), name)
                if let id { nftnl_set_set_u32(s, UInt16(NFTNL_SET_ID.rawValue), id) }
                for range in chunk {
                    Self.element(s, key: range.first, end: false)
                    if shape.interval, let end = Bytes.successor(range.last) { Self.element(s, key: end, end: true) }
                }
                nftnl_set_elems_nlmsg_build_payload(nlh, s)
            }
        }
    }

    static func element(_ set: OpaquePointer, key: [UInt8], end: Bool) {
        let e = nftnl_set_elem_alloc()!
        _ = key.withUnsafeBytes { nftnl_set_elem_set(e, UInt16(NFTNL_SET_ELEM_KEY), $0.baseAddress, UInt32($0.count)) }
        if end { nftnl_set_elem_set_u32(e, UInt16(NFTNL_SET_ELEM_FLAGS), NFT.elemIntervalEnd) }
        nftnl_set_elem_add(set, e)
    }
}

/// One nf_tables socket kept open from change to change, for a daemon that commits often (the
/// policy agent). A change that removes something makes nf_tables free it after an RCU grace
/// period, and closing an nfnetlink socket waits for that (`nft_rcv_nl_event`): 5–20 ms per
/// change that a kept socket does not pay. The socket belongs to the network namespace it was
/// opened in; a change made from another namespace opens a new one.
public final class NFTablesSession: @unchecked Sendable { // state guarded by `lock`
    private var lock = pthread_mutex_t()
    private var netlink: NFNetlink?
    private var namespace: UInt64 = 0

    public init() { pthread_mutex_init(&lock, nil) }

    /// Runs `body` with the socket, one change at a time (its sequence numbers and buffer are
    /// not shared). After an error the socket is closed: whatever it still holds (a dump cut
    /// short) must not answer the next request.
    func using<T>(_ body: (NFNetlink) throws -> T) throws -> T {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        let current = NFTablesBackend.namespaceInode()
        if netlink == nil || namespace != current {
            netlink = try NFNetlink()
            namespace = current
        }
        do { return try body(netlink!) } catch {
            netlink = nil
            throw error
        }
    }


}
