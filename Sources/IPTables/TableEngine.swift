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
    /// Every kernel chain docknfv owns for this table: `DNFV-<chain>` for built-ins with rules and
    /// for every user chain.
    var ownedChains: [String] {
        let builtins = table.builtinChains.filter { !(entries[$0] ?? []).isEmpty }
        return (builtins + allUserChains).map(ChainNames.owned)
    }

    /// The comment on docknfv's jump rules, so `iptables -S` shows who put them there.
    static let jumpComment = "docknfv"

    func jumpRule(to builtin: String) -> Rule {
        Rule(family: family, matches: [.comment(Self.jumpComment)], target: .jump(ChainNames.owned(builtin)))
    }
}

/// Applies, checks and removes docknfv's rules in one (family, table) through libiptc, in the
/// current thread's network namespace. Only `DNFV-*` chains, the jumps into them (first in each
/// built-in chain, with comment "docknfv") and the policies docknfv was asked to set are touched.
public struct TableEngine {
    public var lockPath = XtablesLock.defaultPath
    public var lockTimeout: Double = 10
    /// Commit retries when another writer changed the table in between (EAGAIN).
    public var retries = 5
    var builder = EntryBuilder()

    public init() {}

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

    /// Removes everything docknfv owns in the table and resets the policies it set to ACCEPT.
    @discardableResult
    public func remove(family: IPFamily, table: NetfilterTable, policies: [String] = []) throws -> Bool {
        let empty = TableRules(family: family, table: table)
        return try modifyTable(family, table) { handle in
            let owned = kernelChains(handle, family: family).filter(ChainNames.isOwned)
            let resets = policies.filter { (policy(family, $0, handle) ?? "ACCEPT") != "ACCEPT" }
            if owned.isEmpty && resets.isEmpty && jumpPositions(family, handle, table: table).isEmpty { return false }
            try rewrite(empty, built: [:], handle: handle)
            for chain in resets { try call("iptc_set_policy", chain, family) { dnfv_tc_set_policy(family.addressFamily, chain, "ACCEPT", handle) } }
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
                let entry = try builder.build(rule, chainName: ChainNames.owned)
                return (entry.bytes, entry.target, rule)
            }
        }
        for builtin in desired.table.builtinChains where !(desired.entries[builtin] ?? []).isEmpty {
            let entry = try builder.build(desired.jumpRule(to: builtin), chainName: { $0 })
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

    func policy(_ family: IPFamily, _ chain: String, _ handle: UnsafeMutableRawPointer) -> String? {
        dnfv_tc_get_policy(family.addressFamily, chain, handle).map { String(cString: $0) }
    }

    /// (built-in chain, 1-based rule numbers) of docknfv's jump rules.
    func jumpPositions(_ family: IPFamily, _ handle: UnsafeMutableRawPointer, table: NetfilterTable) -> [(String, [Int])] {
        table.builtinChains.compactMap { chain in
            guard dnfv_tc_is_chain(family.addressFamily, chain, handle) != 0 else { return nil }
            let positions = rules(family, chain, handle).enumerated()
                .filter { isOurJump($0.element, from: chain, family: family) }.map { $0.offset }
            return positions.isEmpty ? nil : (chain, positions)
        }
    }

    /// docknfv's jump: into DNFV-<that built-in chain>, carrying docknfv's comment. A foreign rule
    /// that happens to jump into a docknfv chain is not ours and is never deleted.
    func isOurJump(_ rule: (entry: UnsafeRawPointer, target: String), from chain: String, family: IPFamily) -> Bool {
        guard rule.target == ChainNames.owned(chain) else { return false }
        var size = 0
        guard let comment = dnfv_entry_find_match(family.addressFamily, rule.entry, "comment", &size) else { return false }
        let text = comment.withMemoryRebound(to: CChar.self, capacity: size) { String(cString: $0) }
        return text == TableRules.jumpComment
    }

    /// `firstOnly`: stop at the first difference (apply only needs to know whether to commit).
    func drift(_ desired: TableRules, built: Built, handle: UnsafeMutableRawPointer, firstOnly: Bool = false) throws -> TableDrift {
        let family = desired.family
        var drift = TableDrift()
        let owned = Set(kernelChains(handle, family: family).filter(ChainNames.isOwned))
        let wanted = Set(desired.ownedChains)
        for chain in owned.subtracting(wanted).sorted() { drift.items.append(.unexpectedChain(chain)) }
        for kernelChain in desired.ownedChains {
            let chain = ChainNames.userChain(ofOwned: kernelChain)!
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
        let jumpsByChain = Dictionary(uniqueKeysWithValues: jumpPositions(family, handle, table: desired.table))
        for builtin in desired.table.builtinChains {
            let jumps = jumpsByChain[builtin] ?? []
            let wantJump = !(desired.entries[builtin] ?? []).isEmpty
            if wantJump && jumps != [0] { drift.items.append(.missingJump(from: builtin)) }
            if !wantJump && !jumps.isEmpty { drift.items.append(.unexpectedJump(from: builtin)) }
        }
        for (chain, wantedPolicy) in desired.policies.sorted(by: { $0.key < $1.key }) where policy(family, chain, handle) != wantedPolicy {
            drift.items.append(.policy(chain: chain, wanted: wantedPolicy))
        }
        return drift
    }

    /// Replaces docknfv's part of the table in the handle (nothing reaches the kernel before commit).
    func rewrite(_ desired: TableRules, built: Built, handle: UnsafeMutableRawPointer) throws {
        let family = desired.family
        // 1. docknfv's jumps out of the built-in chains (highest position first).
        for (chain, positions) in jumpPositions(family, handle, table: desired.table) {
            for position in positions.reversed() {
                try call("iptc_delete_num_entry", "\(chain) rule \(position + 1)", family) {
                    dnfv_tc_delete_num(family.addressFamily, chain, UInt32(position), handle)
                }
            }
        }
        // 2. Empty every docknfv chain, then delete the ones no longer wanted.
        let owned = kernelChains(handle, family: family).filter(ChainNames.isOwned)
        for chain in owned {
            try call("iptc_flush_entries", chain, family) { dnfv_tc_flush_entries(family.addressFamily, chain, handle) }
        }
        let wanted = Set(desired.ownedChains)
        for chain in owned where !wanted.contains(chain) {
            if dnfv_tc_delete_chain(family.addressFamily, chain, handle) == 0 {
                if errno == EMLINK || errno == EBUSY { throw IPTablesError.foreignReference(chain: chain) }
                try call("iptc_delete_chain", chain, family) { 0 }
            }
        }
        // 3. Create what is missing and fill every docknfv chain.
        for chain in desired.ownedChains where dnfv_tc_is_chain(family.addressFamily, chain, handle) == 0 {
            try call("iptc_create_chain", chain, family) { dnfv_tc_create_chain(family.addressFamily, chain, handle) }
        }
        for kernelChain in desired.ownedChains {
            let chain = ChainNames.userChain(ofOwned: kernelChain)!
            for rule in built[chain] ?? [] {
                try rule.bytes.withUnsafeBytes { raw in
                    try call("iptc_append_entry", "\(kernelChain): \(rule.rule.map(RuleRenderer.render) ?? "")", family) {
                        dnfv_tc_append(family.addressFamily, kernelChain, raw.baseAddress, handle)
                    }
                }
            }
        }
        // 4. Jump into docknfv's chain first thing in each built-in chain that has rules.
        for builtin in desired.table.builtinChains {
            guard let jump = built["jump:" + builtin]?.first else { continue }
            try jump.bytes.withUnsafeBytes { raw in
                try call("iptc_insert_entry", "\(builtin) → \(ChainNames.owned(builtin))", family) {
                    dnfv_tc_insert(family.addressFamily, builtin, raw.baseAddress, 0, handle)
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
        for (family, file) in [(IPFamily.v4, "ip_tables_names"), (.v6, "ip6_tables_names")] {
            for name in Self.lines("/proc/thread-self/net/\(file)") {
                guard let table = NetfilterTable(rawValue: name) else { continue }
                let busy = (try? readTable(family, table) { handle -> Bool in
                    kernelChains(handle, family: family).contains { chain in
                        !table.builtinChains.contains(chain) || !rules(family, chain, handle).isEmpty
                            || (policy(family, chain, handle) ?? "ACCEPT") != "ACCEPT"
                    }
                }) ?? false
                if busy { return true }
            }
        }
        return false
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
