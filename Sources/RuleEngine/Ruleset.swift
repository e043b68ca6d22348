@_exported import Rules

/// (family, table): the unit a ruleset is organised by (and the unit libiptc commits).
public struct TableKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var family: IPFamily
    public var table: NetfilterTable
    public init(_ family: IPFamily, _ table: NetfilterTable) { self.family = family; self.table = table }
    public var description: String { "\(family)/\(table.rawValue)" }
    public static func < (a: TableKey, b: TableKey) -> Bool {
        (a.family == .v4 ? 0 : 1, a.table) < (b.family == .v4 ? 0 : 1, b.table)
    }
    public init?(_ text: String) {
        let parts = text.split(separator: "/").map(String.init)
        guard parts.count == 2, let family = IPFamily(rawValue: parts[0]), let table = NetfilterTable(rawValue: parts[1]) else { return nil }
        self.init(family, table)
    }
}

/// What an owner wants in one (family, table): its rules per chain (built-in or its own user
/// chains) and the policies it sets on built-in chains.
public struct TableRules: Sendable, Equatable {
    public var family: IPFamily
    public var table: NetfilterTable
    /// Chain name (as the user knows it: `FORWARD`, `MYCHAIN`) → rules in order.
    public var entries: [String: [RuleEntry]]
    /// User chains that exist even without rules (jump targets).
    public var userChains: Set<String>
    public var policies: [String: String]

    public init(family: IPFamily, table: NetfilterTable, chains: [String: [Rule]] = [:], userChains: Set<String> = [],
                policies: [String: String] = [:]) {
        self.family = family
        self.table = table
        self.entries = chains.mapValues { $0.map(RuleEntry.init) }
        self.userChains = userChains
        self.policies = policies
    }

    public init(family: IPFamily, table: NetfilterTable, entries: [String: [RuleEntry]], userChains: Set<String> = [],
                policies: [String: String] = [:]) {
        self.family = family
        self.table = table
        self.entries = entries
        self.userChains = userChains
        self.policies = policies
    }

    /// The rules per chain, parsed (every entry; a convenience for callers with few rules).
    public var chains: [String: [Rule]] {
        get { entries.mapValues { $0.compactMap { try? $0.rule() } } }
        set { entries = newValue.mapValues { $0.map(RuleEntry.init) } }
    }

    /// The parsed rules of one chain; throws for a stored rule that does not parse.
    public func rules(_ chain: String) throws -> [Rule] { try (entries[chain] ?? []).map { try $0.rule() } }

    public static func == (a: TableRules, b: TableRules) -> Bool {
        a.family == b.family && a.table == b.table && a.userChains == b.userChains && a.policies == b.policies
            && a.entries.mapValues { $0.map(\.text) } == b.entries.mapValues { $0.map(\.text) }
    }

    public var key: TableKey { TableKey(family, table) }
    public var isEmpty: Bool { entries.values.allSatisfy(\.isEmpty) && userChains.isEmpty && policies.isEmpty }

    /// User chains: those with rules that are not built-in, and the declared ones.
    public var allUserChains: [String] {
        Set(entries.keys).union(userChains).subtracting(table.builtinChains).sorted()
    }
}

/// A set docknfv owns (an ipset with the x_tables backend, an nftables set with nftables).
public struct SetSpec: Sendable, Equatable {
    public var type: SetType
    public var family: IPFamily
    public var entries: [SetEntry]
    public init(type: SetType, family: IPFamily, entries: [SetEntry] = []) {
        self.type = type
        self.family = family
        self.entries = entries
    }
}

/// Who a ruleset belongs to. Each owner's objects are kept apart from every other owner's, so one
/// owner's apply or remove never touches another's (or anything docknfv does not own).
public struct Owner: Hashable, Sendable, CustomStringConvertible {
    /// Letters, digits, `-` and `_`; at most 32 characters.
    public let name: String
    /// docknfvctl's rules in a network namespace (and docknfv-init's re-application of them).
    public static let cli = Owner(validated: "cli")

    public init(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count <= 32, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw EngineError(.invalidInput, "owner \(DisplayText.quoted(name)): 1 to 32 letters, digits, - or _")
        }
        self.name = name
    }
    init(validated name: String) { self.name = name }
    public var description: String { name }
}

/// Everything one owner wants the kernel to hold: rules, chains and policies per (family, table),
/// and the sets its rules match on.
public struct Ruleset: Sendable, Equatable {
    public var owner: Owner
    public var tables: [TableRules]
    public var sets: [String: SetSpec]
    /// Where the kernel stood right after this ruleset was last applied, as the backend reported
    /// it (`ApplyReport.kernelMark`). A backend that finds the kernel still there may skip reading
    /// it back; nil means "read it".
    public var kernelMark: KernelMark?

    public init(owner: Owner = .cli, tables: [TableRules] = [], sets: [String: SetSpec] = [:]) {
        self.owner = owner
        self.tables = tables
        self.sets = sets
    }

    public var isEmpty: Bool { tables.allSatisfy(\.isEmpty) && sets.isEmpty }

    public static func == (a: Ruleset, b: Ruleset) -> Bool { a.owner == b.owner && a.tables == b.tables && a.sets == b.sets }

    public func table(_ key: TableKey) -> TableRules? { tables.first { $0.key == key } }

    /// The sets rules refer to by name (parses every rule).
    public func referencedSets() throws -> Set<String> {
        var names = Set<String>()
        for table in tables { for entries in table.entries.values { for entry in entries { for case .set(let s) in try entry.rule().matches { names.insert(s.name) } } } }
        return names
    }

    /// Checks that hold whatever the backend: jumps lead to chains the table has, and every rule
    /// fits its table and the hooks its chain is reached from (`RuleContext`). Both backends call
    /// this first, so they refuse with the same words.
    public func validate() throws {
        for table in tables {
            let known = Set(table.allUserChains)
            // Rules a state docknfv wrote were checked when added; only the others are checked now.
            let fresh = table.entries.mapValues { $0.filter { !$0.trusted } }.filter { !$0.value.isEmpty }
            guard !fresh.isEmpty else { continue }
            let hooks = fresh.keys.contains { !table.table.builtinChains.contains($0) } ? try table.hooksReaching() : [:]
            for (chain, entries) in fresh.sorted(by: { $0.key < $1.key }) {
                for entry in entries {
                    let rule = try entry.rule()
                    if let jump = rule.target.chain, !known.contains(jump) {
                        throw EngineError(.invalidInput, "rule \"\(entry.text)\": jumps to chain \(jump), which docknfv does not have")
                    }
                    for case .set(let match) in rule.matches {
                        if let spec = sets[match.name], spec.family != rule.family {
                            throw EngineError(.invalidInput, "rule \"\(entry.text)\": set \(match.name) holds \(spec.family) elements, the rule is \(rule.family)")
                        }
                    }
                    // The context check is what costs; an entry already checked in this very place
                    // (carried over from the last change) is not checked again.
                    let context = ValidationContext(table: table.table, chain: chain, hooks: hooks[chain])
                    if entry.validatedContext == context { continue }
                    do { try RuleContext.validate(rule, table: table.table, chain: chain, builtinHooks: hooks[chain]) } catch {
                        throw EngineError(.invalidInput, "rule \"\(entry.text)\" in \(chain): \(error)", cause: error)
                    }
                    entry.validatedContext = context
                }
            }
        }
    }
}

extension TableRules {
    /// For each user chain, the hooks of the built-in chains that reach it through jumps and gotos.
    func hooksReaching() throws -> [String: Set<NetfilterHook>] {
        var out: [String: Set<NetfilterHook>] = [:]
        for builtin in table.builtinChains {
            guard let hook = NetfilterHook(builtinChain: builtin) else { continue }
            var pending = [builtin], seen: Set<String> = [builtin]
            while let chain = pending.popLast() {
                for entry in entries[chain] ?? [] {
                    guard let next = try entry.rule().target.chain, seen.insert(next).inserted else { continue }
                    out[next, default: []].insert(hook)
                    pending.append(next)
                }
            }
        }
        return out
    }
}

/// Text from users shown in messages.
public enum DisplayText {
    /// As `quoted`, without the quotes (for values in a sentence).
    public static func clipped(_ text: String) -> String { String(quoted(text).dropFirst().dropLast()) }

    /// A name for a message: quoted, control characters escaped, at most 64 characters.
    public static func quoted(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(64) {
            if scalar.value < 0x20 || scalar.value == 0x7f || scalar == "\"" { out += "\\u{\(String(scalar.value, radix: 16))}" } else { out.unicodeScalars.append(scalar) }
        }
        return "\"" + out + (text.unicodeScalars.count > 64 ? "…" : "") + "\""
    }
}
