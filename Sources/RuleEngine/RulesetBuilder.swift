/// Builds an owner's `Ruleset` from rule texts in iptables syntax (the form planners produce).
/// Each text is parsed as it is added, so a bad value surfaces where it came from.
public struct RulesetBuilder: Sendable {
    public private(set) var ruleset: Ruleset

    public init(owner: Owner) { ruleset = Ruleset(owner: owner) }

    /// Appends `text` (e.g. `-p tcp --dport 80 -j ACCEPT`) to `chain` of (family, table).
    public mutating func append(_ family: IPFamily, _ table: NetfilterTable, _ chain: String, _ text: String) throws {
        let rules: [Rule]
        do { rules = try RuleParser(family: family).parse(text) } catch {
            throw EngineError(.invalidInput, error.description, cause: error)
        }
        for rule in rules { append(family, table, chain, rule) }
    }

    public mutating func append(_ family: IPFamily, _ table: NetfilterTable, _ chain: String, _ rule: Rule) {
        append(family, table, chain, entry: RuleEntry(rule))
    }

    /// Appends an entry as it is (a planner reusing the entries of its last plan keeps their
    /// parsed rule and fingerprint).
    public mutating func append(_ family: IPFamily, _ table: NetfilterTable, _ chain: String, entry: RuleEntry) {
        let index = tableIndex(family, table)
        ruleset.tables[index].entries[chain, default: []].append(entry)
        if !table.builtinChains.contains(chain) { ruleset.tables[index].userChains.insert(chain) }
    }

    /// Declares a user chain (it exists even while empty).
    public mutating func chain(_ family: IPFamily, _ table: NetfilterTable, _ chain: String) {
        ruleset.tables[tableIndex(family, table)].userChains.insert(chain)
    }

    public mutating func set(_ name: String, _ spec: SetSpec) { ruleset.sets[name] = spec }

    mutating func tableIndex(_ family: IPFamily, _ table: NetfilterTable) -> Int {
        if let index = ruleset.tables.firstIndex(where: { $0.family == family && $0.table == table }) { return index }
        ruleset.tables.append(TableRules(family: family, table: table))
        return ruleset.tables.count - 1
    }
}

extension RulesetBuilder {
    /// Puts `rules` (in the order given) before each chain's existing rules.
    public mutating func prepend(_ rules: [(IPFamily, NetfilterTable, String, Rule)]) {
        for (family, table, chain, rule) in rules.reversed() {
            let index = tableIndex(family, table)
            ruleset.tables[index].entries[chain, default: []].insert(RuleEntry(rule), at: 0)
            if !table.builtinChains.contains(chain) { ruleset.tables[index].userChains.insert(chain) }
        }
    }
}
