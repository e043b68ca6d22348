import CNetfilterShim
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// The advisory lock the iptables tools take (`-w`): held from reading a table to committing it,
/// so docknfv and iptables never overwrite each other's commits.
public final class XtablesLock {
    public static let defaultPath = "/run/xtables.lock"
    private let fd: Int32

    /// Waits up to `timeout` seconds for the lock.
    public init(path: String = XtablesLock.defaultPath, timeout: Double = 10) throws {
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw IPTablesError.lock(path: path, errno: errno) }
        let start = ContinuousClock.now
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else { let e = errno; close(fd); throw IPTablesError.lock(path: path, errno: e) }
            if ContinuousClock.now - start > .milliseconds(Int64(timeout * 1000)) {
                close(fd)
                throw IPTablesError.lockTimeout(path: path, seconds: timeout)
            }
            usleep(2_000)
        }
        self.fd = fd
    }

    deinit { close(fd) } // closing releases the flock
}

extension TableRules {
    /// Every kernel chain the owner has in this table: one for each built-in chain with rules and
    /// one for every user chain.
    func ownedChains(_ chains: OwnerChains) -> [String] {
        let builtins = table.builtinChains.filter { !(entries[$0] ?? []).isEmpty }
        return (builtins + allUserChains).map(chains.kernelName)
    }

    func jumpRule(to builtin: String, _ chains: OwnerChains) -> Rule {
        Rule(family: family, matches: [.comment(chains.jumpComment)], target: .jump(chains.kernelName(builtin)))
    }
}

/// Applies, checks and removes one owner's rules in one (family, table) through libiptc, in the
/// current thread's network namespace. Only the owner's chains (`OwnerChains`), its jumps into
/// them out of the built-in chains (carrying its comment) and the policies it was asked to set
/// (docknfvctl's only) are touched: never another owner's, never anyone else's.
public struct TableEngine {
    public var lockPath = XtablesLock.defaultPath
    public var lockTimeout: Double = 10
    /// Commit retries when another writer changed the table in between (EAGAIN).
    public var retries = 5
    /// Whose rules: docknfvctl's by default.
    public var chains: OwnerChains
    var builder = EntryBuilder()

    public init(owner: Owner = .cli) { chains = OwnerChains(owner) }

    /// Makes the table hold `desired`, in one commit. Returns false when it already did (no commit).
    @discardableResult
    public func apply(_ desired: TableRules) throws -> Bool {
        let built = try buildAll(desired) // bad rules fail here, before anything is locked or touched
        return try modifyTable(desired.family, desired.table) { handle in
            if try drift(desired, built: built, handle: handle, firstOnly: true).isEmpty { return false }
            try rewrite(desired, built: built, handle: handle)
            return true
        }
    }

    /// Removes everything the owner has in the table and resets the policies it set to ACCEPT.
    @discardableResult
    public func remove(family: IPFamily, table: NetfilterTable, policies: [String] = []) throws -> Bool {
        let empty = TableRules(family: family, table: table)
        try requirePolicies(policies)
        return try modifyTable(family, table) { handle in
            let owned = kernelChains(handle, family: family).filter(chains.owns)
            let resets = policies.filter { (policy(family, $0, handle) ?? "ACCEPT") != "ACCEPT" }
            if try owned.isEmpty && resets.isEmpty && jumpPositions(family, handle, table: table).isEmpty { return false }
            try rewrite(empty, built: [:], handle: handle)
            for chain in resets { try call("iptc_set_policy", chain, family) { dnfv_tc_set_policy(family.addressFamily, chain, "ACCEPT", handle) } }
            return true
        }
    }

    /// Appends rules to the end of the owner's chains for built-in chains, in one commit — only
    /// if each chain holds exactly `index` rules before its rule and the built-in chain's jump
    /// into it is in place. Returns false (nothing committed) when the kernel differs. Unlike a
    /// whole apply it does not compare the rest: a rule replaced in place (same count) or an
    /// ipset's content changed by hand stays as it is until the next whole change or `apply`.
    public func append(_ rules: [(chain: String, rule: Rule, index: Int)], family: IPFamily, table: NetfilterTable) throws -> Bool {
        // A rule that cannot be built here (a set the kernel lost, say) is left to the whole
        // path, which re-creates what is missing or says what is wrong.
        guard let built = try? rules.map({ try builder.build($0.rule, chainName: chains.kernelName) }) else { return false }
        return try modifyTable(family, table) { handle in
            let jumps = Dictionary(uniqueKeysWithValues: try jumpPositions(family, handle, table: table))
            var lengths: [String: Int] = [:]
            for rule in rules {
                let kernelChain = chains.kernelName(rule.chain)
                guard table.builtinChains.contains(rule.chain), let positions = jumps[rule.chain], chains.jumpInPlace(positions),
                      dnfv_tc_is_chain(family.addressFamily, kernelChain, handle) != 0 else { return false }
                let length = lengths[kernelChain] ?? ruleCount(family, kernelChain, handle)
                guard length == rule.index else { return false }
                lengths[kernelChain] = length + 1
            }
            for (rule, entry) in zip(rules, built) {
                let kernelChain = chains.kernelName(rule.chain)
                try entry.bytes.withUnsafeBytes { raw in
                    try call("iptc_append_entry", "\(kernelChain): \(RuleRenderer.render(rule.rule))", family) {
                        dnfv_tc_append(family.addressFamily, kernelChain, raw.baseAddress, handle)
                    }
                }
            }
            return true
        }
    }

    /// Builds every rule without touching the kernel: the errors `apply` would raise for bad rules.
    public func validate(_ desired: TableRules) throws -> Int {
        try buildAll(desired).values.reduce(0) { $0 + $1.count }
    }

    /// As `validate`, where the sets named in `pending` will exist by the time of apply (they are
    /// created first): their kernel index is not looked up.
    public func validate(_ desired: TableRules, pendingSets pending: Set<String>) throws -> Int {
        var engine = self
        let lookup = builder.setIndex
        engine.builder.setIndex = { name in pending.contains(name) ? 0 : try lookup(name) }
        return try engine.validate(desired)
    }

    /// What differs between `desired` and the kernel.
    public func check(_ desired: TableRules) throws -> TableDrift {
        let built = try buildAll(desired)
        return try readTable(desired.family, desired.table) { handle in
            try drift(desired, built: built, handle: handle)
        }
    }

    // MARK: - Internals

    /// Built entries per chain; the rule is kept for messages (rendered only when one is needed).
    typealias Built = [String: [(bytes: [UInt8], target: String, rule: Rule?)]]

    func buildAll(_ desired: TableRules) throws -> Built {
        try requireFits(desired)
        let known = Set(desired.entries.keys).union(desired.userChains).subtracting(desired.table.builtinChains)
        var out: Built = [:]
        for (chain, entries) in desired.entries {
            out[chain] = try entries.map { entry in
                let rule = try entry.rule()
                if let jump = rule.target.chain, !known.contains(jump) {
                    throw IPTablesError.unknownChain(chain: jump, rule: RuleRenderer.render(rule))
                }
                if let allowed = rule.target.allowedTables, !allowed.contains(desired.table) {
                    throw IPTablesError.targetNotAllowed(target: RuleRenderer.targetName(rule.target),
                                                         table: desired.table.rawValue, rule: RuleRenderer.render(rule))
                }
                let entry = try builder.build(rule, chainName: chains.kernelName)
                return (entry.bytes, entry.target, rule)
            }
        }
        for builtin in desired.table.builtinChains where !(desired.entries[builtin] ?? []).isEmpty {
            let entry = try builder.build(desired.jumpRule(to: builtin, chains), chainName: { $0 })
            out["jump:" + builtin] = [(entry.bytes, entry.target, nil)]
        }
        return out
    }

    /// Runs `body` with a libiptc handle for the table under the xtables lock, and commits when it
    /// returns true. A commit that lost a race with another writer (EAGAIN) is retried from a fresh
    /// read, up to `retries` times. Returns whether a commit happened.
    func modifyTable(_ family: IPFamily, _ table: NetfilterTable, _ body: (UnsafeMutableRawPointer) throws -> Bool) throws -> Bool {
        let lock = try XtablesLock(path: lockPath, timeout: lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        var attempt = 0
        while true {
            let handle = try open(family, table)
            defer { dnfv_tc_free(family.addressFamily, handle) }
            guard try body(handle) else { return false }
            if dnfv_tc_commit(family.addressFamily, handle) != 0 { return true }
            let e = errno
            attempt += 1
            if e == EAGAIN && attempt < retries { continue }
            var message = Self.libiptcText(family, e)
            if e == EINVAL || e == ENOENT {
                // The kernel checks each match and target at commit and says why in its log.
                message += "; the kernel refused a rule (its log, `dmesg | grep x_tables`, says which); nothing was changed"
            }
            throw IPTablesError.libiptc(call: "iptc_commit", object: "\(family) table \(table.rawValue)", message: message, errno: e)
        }
    }

    /// Runs `body` with a libiptc handle for the table under the xtables lock; never commits.
    func readTable<T>(_ family: IPFamily, _ table: NetfilterTable, _ body: (UnsafeMutableRawPointer) throws -> T) throws -> T {
        let lock = try XtablesLock(path: lockPath, timeout: lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        let handle = try open(family, table)
        defer { dnfv_tc_free(family.addressFamily, handle) }
        return try body(handle)
    }

    func open(_ family: IPFamily, _ table: NetfilterTable) throws -> UnsafeMutableRawPointer {
        guard let handle = dnfv_tc_init(family.addressFamily, table.rawValue) else {
            let e = errno
            throw IPTablesError.libiptc(call: "iptc_init", object: "\(family) table \(table.rawValue)",
                                        message: Self.libiptcText(family, e), errno: e)
        }
        return handle
    }

    func call(_ name: String, _ object: @autoclosure () -> String, _ family: IPFamily, _ body: () -> Int32) throws {
        if body() == 0 {
            let e = errno
            throw IPTablesError.libiptc(call: name, object: object(), message: Self.libiptcText(family, e), errno: e)
        }
    }

    /// libiptc's text for an errno, except its "Permission denied (you must be root)", which is
    /// wrong for a root without the capabilities here (a user namespace, a container). libiptc
    /// talks to the kernel over a raw socket, so it needs CAP_NET_RAW as well as CAP_NET_ADMIN (a
    /// container with only NET_ADMIN can use the nftables backend, not this one).
    static func libiptcText(_ family: IPFamily, _ e: Int32) -> String {
        if e == EPERM || e == EACCES {
            return "\(String(cString: strerror(e))) (legacy x_tables needs CAP_NET_ADMIN and CAP_NET_RAW in this network namespace; with only CAP_NET_ADMIN use --backend nftables)"
        }
        return String(cString: dnfv_tc_strerror(family.addressFamily, e))
    }

    func kernelChains(_ handle: UnsafeMutableRawPointer, family: IPFamily) -> [String] {
        var out: [String] = []
        var chain = dnfv_tc_first_chain(family.addressFamily, handle)
        while let name = chain {
            out.append(String(cString: name))
            chain = dnfv_tc_next_chain(family.addressFamily, handle)
        }
        return out
    }

    func rules(_ family: IPFamily, _ chain: String, _ handle: UnsafeMutableRawPointer) -> [(entry: UnsafeRawPointer, target: String)] {
        var out: [(UnsafeRawPointer, String)] = []
        var rule = dnfv_tc_first_rule(family.addressFamily, chain, handle)
        while let entry = rule {
            let target = dnfv_tc_get_target(family.addressFamily, entry, handle).map { String(cString: $0) } ?? ""
            out.append((entry, target))
            rule = dnfv_tc_next_rule(family.addressFamily, entry, handle)
        }
        return out
    }

    func ruleCount(_ family: IPFamily, _ chain: String, _ handle: UnsafeMutableRawPointer) -> Int {
        var count = 0
        var rule = dnfv_tc_first_rule(family.addressFamily, chain, handle)
        while let entry = rule {
            count += 1
            rule = dnfv_tc_next_rule(family.addressFamily, entry, handle)
        }
        return count
    }

    func policy(_ family: IPFamily, _ chain: String, _ handle: UnsafeMutableRawPointer) -> String? {
        dnfv_tc_get_policy(family.addressFamily, chain, handle).map { String(cString: $0) }
    }

    /// (built-in chain, 0-based rule positions) of the owner's jump rules: into the owner's chain
    /// for that built-in chain, carrying the owner's comment. A foreign rule that happens to jump
    /// into an owner's chain is not the owner's and is never deleted; another owner's jump into it
    /// (their names hash alike) is refused.
    func jumpPositions(_ family: IPFamily, _ handle: UnsafeMutableRawPointer, table: NetfilterTable) throws -> [(String, [Int])] {
        try table.builtinChains.compactMap { chain in
            guard dnfv_tc_is_chain(family.addressFamily, chain, handle) != 0 else { return nil }
            let target = chains.kernelName(chain)
            var positions: [Int] = []
            for (index, rule) in rules(family, chain, handle).enumerated() where rule.target == target {
                let comment = comment(of: rule.entry, family: family)
                if comment == chains.jumpComment { positions.append(index) }
                else if chains.owner != .cli, let other = comment, other.hasPrefix("docknfv ") {
                    throw IPTablesError.sharedPrefix(prefix: chains.prefix, owners: [chains.owner.name, String(other.dropFirst(8))])
                }
            }
            return positions.isEmpty ? nil : (chain, positions)
        }
    }

    /// The text of a rule's comment match, if it has one.
    func comment(of entry: UnsafeRawPointer, family: IPFamily) -> String? {
        var size = 0
        guard let comment = dnfv_entry_find_match(family.addressFamily, entry, "comment", &size) else { return nil }
        return comment.withMemoryRebound(to: CChar.self, capacity: size) { String(cString: $0) }
    }

    /// Where an owner's missing jump goes: first for docknfvctl's; for another owner's, first too
    /// unless docknfvctl's is, then right after it (docknfvctl's stays first, nobody drifts).
    func jumpInsertPosition(_ family: IPFamily, _ builtin: String, _ handle: UnsafeMutableRawPointer) -> UInt32 {
        let cli = OwnerChains(.cli)
        guard chains.owner != .cli, let first = rules(family, builtin, handle).first, first.target == cli.kernelName(builtin),
              comment(of: first.entry, family: family) == cli.jumpComment else { return 0 }
        return 1
    }

    /// What the owner's chain names allow: user chain names short enough for its prefix, and
    /// policies only for docknfvctl (every owner shares the built-in chains).
    public func requireFits(_ desired: TableRules) throws {
        try requirePolicies(Array(desired.policies.keys))
        for chain in desired.allUserChains where !chains.isValidUserChain(chain) {
            throw IPTablesError.chainName(chain: chain, owner: chains.owner.name, prefix: chains.prefix, max: chains.maxChainLength)
        }
    }

    func requirePolicies(_ builtins: [String]) throws {
        guard chains.owner != .cli, let chain = builtins.sorted().first else { return }
        throw IPTablesError.policyNotAllowed(chain: chain, owner: chains.owner.name)
    }

    /// `firstOnly`: stop at the first difference (apply only needs to know whether to commit).
    func drift(_ desired: TableRules, built: Built, handle: UnsafeMutableRawPointer, firstOnly: Bool = false) throws -> TableDrift {
        let family = desired.family
        var drift = TableDrift()
        let owned = Set(kernelChains(handle, family: family).filter(chains.owns))
        let ownedChains = desired.ownedChains(chains)
        for chain in owned.subtracting(ownedChains).sorted() { drift.items.append(.unexpectedChain(chain)) }
        for kernelChain in ownedChains {
            let chain = chains.chain(ofKernel: kernelChain)!
            let want = built[chain] ?? []
            guard owned.contains(kernelChain) else {
                drift.items.append(.missingChain(kernelChain))
                if firstOnly { return drift }
                drift.items += want.enumerated().map { .missingRule(chain: chain, position: $0.offset + 1, rule: $0.element.rule.map(RuleRenderer.render) ?? "") }
                continue
            }
            let have = rules(family, kernelChain, handle)
            for (index, rule) in want.enumerated() {
                let same = index < have.count && rule.bytes.withUnsafeBytes { raw in
                    dnfv_entry_equal(family.addressFamily, raw.baseAddress, rule.target, have[index].entry, have[index].target) == 1
                }
                if !same {
                    drift.items.append(.missingRule(chain: chain, position: index + 1, rule: rule.rule.map(RuleRenderer.render) ?? ""))
                    if firstOnly { return drift }
                }
            }
            if have.count > want.count { drift.items.append(.unexpectedRules(chain: kernelChain, count: have.count - want.count)) }
        }
        let jumpsByChain = Dictionary(uniqueKeysWithValues: try jumpPositions(family, handle, table: desired.table))
        for builtin in desired.table.builtinChains {
            let jumps = jumpsByChain[builtin] ?? []
            let wantJump = !(desired.entries[builtin] ?? []).isEmpty
            if wantJump && !chains.jumpInPlace(jumps) {
                // docknfvctl's misplaced jump is missing from the top; another owner's is only ever there twice.
                drift.items.append(jumps.isEmpty || chains.owner == .cli ? .missingJump(from: builtin) : .unexpectedJump(from: builtin))
            }
            if !wantJump && !jumps.isEmpty { drift.items.append(.unexpectedJump(from: builtin)) }
        }
        for (chain, wantedPolicy) in desired.policies.sorted(by: { $0.key < $1.key }) where policy(family, chain, handle) != wantedPolicy {
            drift.items.append(.policy(chain: chain, wanted: wantedPolicy))
        }
        return drift
    }

    /// Replaces the owner's part of the table in the handle (nothing reaches the kernel before commit).
    func rewrite(_ desired: TableRules, built: Built, handle: UnsafeMutableRawPointer) throws {
        let family = desired.family
        // 1. The owner's jumps out of the built-in chains (highest position first), except one
        //    already in place that stays wanted.
        var kept = Set<String>()
        for (chain, positions) in try jumpPositions(family, handle, table: desired.table) {
            if built["jump:" + chain] != nil && chains.jumpInPlace(positions) { kept.insert(chain); continue }
            for position in positions.reversed() {
                try call("iptc_delete_num_entry", "\(chain) rule \(position + 1)", family) {
                    dnfv_tc_delete_num(family.addressFamily, chain, UInt32(position), handle)
                }
            }
        }
        // 2. Empty every chain of the owner, then delete the ones no longer wanted.
        let owned = kernelChains(handle, family: family).filter(chains.owns)
        for chain in owned {
            try call("iptc_flush_entries", chain, family) { dnfv_tc_flush_entries(family.addressFamily, chain, handle) }
        }
        let ownedChains = desired.ownedChains(chains)
        let wanted = Set(ownedChains)
        for chain in owned where !wanted.contains(chain) {
            if dnfv_tc_delete_chain(family.addressFamily, chain, handle) == 0 {
                if errno == EMLINK || errno == EBUSY { throw IPTablesError.foreignReference(chain: chain) }
                try call("iptc_delete_chain", chain, family) { 0 }
            }
        }
        // 3. Create what is missing and fill every chain of the owner.
        for chain in ownedChains where dnfv_tc_is_chain(family.addressFamily, chain, handle) == 0 {
            try call("iptc_create_chain", chain, family) { dnfv_tc_create_chain(family.addressFamily, chain, handle) }
        }
        for kernelChain in ownedChains {
            let chain = chains.chain(ofKernel: kernelChain)!
            for rule in built[chain] ?? [] {
                try rule.bytes.withUnsafeBytes { raw in
                    try call("iptc_append_entry", "\(kernelChain): \(rule.rule.map(RuleRenderer.render) ?? "")", family) {
                        dnfv_tc_append(family.addressFamily, kernelChain, raw.baseAddress, handle)
                    }
                }
            }
        }
        // 4. A jump into the owner's chain, at the top, in each built-in chain that has rules and lacks one.
        for builtin in desired.table.builtinChains where !kept.contains(builtin) {
            guard let jump = built["jump:" + builtin]?.first else { continue }
            let position = jumpInsertPosition(family, builtin, handle)
            try jump.bytes.withUnsafeBytes { raw in
                try call("iptc_insert_entry", "\(builtin) → \(chains.kernelName(builtin))", family) {
                    dnfv_tc_insert(family.addressFamily, builtin, raw.baseAddress, position, handle)
                }
            }
        }
        // 5. Policies.
        for (chain, value) in desired.policies where policy(family, chain, handle) != value {
            try call("iptc_set_policy", "\(chain) \(value)", family) { dnfv_tc_set_policy(family.addressFamily, chain, value, handle) }
        }
    }
}

extension TableEngine {
    /// Whether legacy x_tables holds any rule, user chain or non-ACCEPT policy in this namespace
    /// (anyone's). Only tables the namespace has instantiated are read, so none is created.
    public func holdsAnyRules() -> Bool {
        Self.instantiatedTables().contains { key in
            (try? readTable(key.family, key.table) { handle -> Bool in
                kernelChains(handle, family: key.family).contains { chain in
                    !key.table.builtinChains.contains(chain) || !rules(key.family, chain, handle).isEmpty
                        || (policy(key.family, chain, handle) ?? "ACCEPT") != "ACCEPT"
                }
            }) ?? false
        }
    }

    /// The (family, table)s this namespace has instantiated (reading another would create it).
    public static func instantiatedTables() -> [TableKey] {
        [(IPFamily.v4, "ip_tables_names"), (.v6, "ip6_tables_names")].flatMap { family, file in
            lines("/proc/thread-self/net/\(file)").compactMap { NetfilterTable(rawValue: $0).map { TableKey(family, $0) } }
        }
    }

    static func lines(_ path: String) -> [String] {
        guard let file = fopen(path, "r") else { return [] }
        defer { fclose(file) }
        var out: [String] = []
        var buffer = [CChar](repeating: 0, count: 256)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !line.isEmpty { out.append(line) }
        }
        return out
    }
}
