import RuleEngine

/// A rule docknfv keeps, with its stable id and its canonical text (what `iptables-save` prints);
/// the rule model is parsed from the text only when something needs it.
public struct StoredRule: Sendable, Equatable {
    public var id: String
    public var table: NetfilterTable
    public var chain: String
    public let entry: RuleEntry

    public init(id: String, table: NetfilterTable, chain: String, rule: Rule) {
        self.init(id: id, table: table, chain: chain, entry: RuleEntry(rule))
    }

    public init(id: String, table: NetfilterTable, chain: String, entry: RuleEntry) {
        self.id = id
        self.table = table
        self.chain = chain
        self.entry = entry
    }

    public var text: String { entry.text }
    public var family: IPFamily { entry.family }
    public var key: TableKey { TableKey(entry.family, table) }
    /// The parsed rule (throws for a hand-edited state whose text does not parse).
    public func rule() throws -> Rule { try entry.rule() }

    public static func == (a: StoredRule, b: StoredRule) -> Bool {
        a.id == b.id && a.table == b.table && a.chain == b.chain && a.entry.text == b.entry.text && a.family == b.family
    }
}

/// Everything docknfvctl was asked to hold in one network namespace: rules, user chains and
/// policies per family and table, and sets. This — not the kernel — is the source of truth;
/// `apply` makes the kernel match it through the backend the state records.
public struct DesiredState: Sendable, Equatable {
    public typealias SetSpec = RuleEngine.SetSpec

    public var rules: [StoredRule] = []
    public var userChains: Set<ChainRef> = []
    public var policies: [ChainRef: String] = [:]
    /// Tables docknfv has written to (so it can clean up tables that became empty).
    public var touched: Set<TableKey> = []
    /// Sets docknfv owns, by name, with their full content.
    public var sets: [String: SetSpec] = [:]
    public var nextID = 1
    /// The backend that holds these rules in the kernel (nil: nothing applied yet).
    public var backend: BackendKind?
    /// Where the kernel stood right after docknfv last changed it (see `Ruleset.kernelMark`).
    public var kernelMark: KernelMark?

    public struct ChainRef: Hashable, Sendable, Comparable {
        public var key: TableKey
        public var chain: String
        public init(_ key: TableKey, _ chain: String) { self.key = key; self.chain = chain }
        public static func < (a: ChainRef, b: ChainRef) -> Bool { (a.key, a.chain) < (b.key, b.chain) }
    }

    public init() {}

    public var isEmpty: Bool { rules.isEmpty && userChains.isEmpty && policies.isEmpty && sets.isEmpty }

    public mutating func newID() -> String {
        defer { nextID += 1 }
        return "r\(nextID)"
    }

    /// The per-table view the engine applies, for every table touched or wanted.
    public func tableRules() -> [TableRules] {
        var keys = touched
        keys.formUnion(rules.map(\.key))
        keys.formUnion(userChains.map(\.key))
        keys.formUnion(policies.keys.map(\.key))
        var tables = Dictionary(uniqueKeysWithValues: keys.map { ($0, TableRules(family: $0.family, table: $0.table)) })
        for stored in rules { tables[stored.key]!.entries[stored.chain, default: []].append(stored.entry) }
        for chain in userChains { tables[chain.key]!.userChains.insert(chain.chain) }
        for (chain, policy) in policies { tables[chain.key]!.policies[chain.chain] = policy }
        return keys.sorted().map { tables[$0]! }
    }

    /// What the backends apply: docknfvctl's ruleset in this namespace.
    public func ruleset() -> Ruleset {
        var ruleset = Ruleset(owner: .cli, tables: tableRules(), sets: sets)
        ruleset.kernelMark = kernelMark
        return ruleset
    }

    /// The state as `iptables-save` would print docknfv's part (rules in docknfv's chain names are
    /// shown under the names the user gave).
    public func saveText(family: IPFamily) -> String {
        var out: [String] = []
        for table in NetfilterTable.allCases.reversed() {
            let key = TableKey(family, table)
            let rules = self.rules.filter { $0.key == key }
            let chains = userChains.filter { $0.key == key }.map(\.chain).sorted()
            let policies = self.policies.filter { $0.key.key == key }
            guard !rules.isEmpty || !chains.isEmpty || !policies.isEmpty else { continue }
            out.append("*\(table.rawValue)")
            for builtin in table.builtinChains { out.append(":\(builtin) \(policies[ChainRef(key, builtin)] ?? "ACCEPT") [0:0]") }
            for chain in chains { out.append(":\(chain) - [0:0]") }
            for stored in rules { out.append("-A \(stored.chain) \(stored.text)") }
            out.append("COMMIT")
        }
        return out.isEmpty ? "" : out.joined(separator: "\n") + "\n"
    }
}
