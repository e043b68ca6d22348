import IPSet
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// The changes front ends make to a namespace's desired state (docknfvctl today; the CNI plugin
/// and the agent use the same calls). Pure: each checks its input against the state and throws an
/// `EngineError` naming what is wrong, leaving the state unchanged.
extension DesiredState {
    static func invalid(_ message: String) -> EngineError { EngineError(.invalidInput, message) }

    /// Whether `chain` can hold rules in (family, table): a built-in chain, or a user chain that exists.
    public func chainExists(_ chain: String, _ key: TableKey) -> Bool {
        key.table.builtinChains.contains(chain) || userChains.contains(ChainRef(key, chain))
    }

    /// Adds rules to a chain at a 1-based position (nil: the end). Returns the stored rules with
    /// their new ids. A rule may go only into a built-in chain or a user chain created before.
    @discardableResult
    public mutating func addRules(_ rules: [Rule], table: NetfilterTable, chain: String, position: Int? = nil) throws -> [StoredRule] {
        guard !rules.isEmpty else { throw Self.invalid("no rule given") }
        for family in Set(rules.map(\.family)) where !chainExists(chain, TableKey(family, table)) {
            throw Self.invalid("chain \(DisplayText.quoted(chain)) does not exist in \(family) table \(table.rawValue): create it first with `docknfvctl chain create \(chain)`")
        }
        // Positions count in each rule's own family's chain (one insert may hold both families),
        // and all of them are checked before anything is inserted.
        func inChain(_ family: IPFamily) -> [Int] {
            self.rules.indices.filter { self.rules[$0].table == table && self.rules[$0].chain == chain && self.rules[$0].family == family }
        }
        if let position {
            for family in Set(rules.map(\.family)) {
                let length = inChain(family).count
                guard position >= 1, position <= length + 1 else {
                    throw Self.invalid("position \(position) is outside chain \(chain) (1 to \(length + 1))")
                }
            }
        }
        var added: [StoredRule] = []
        for rule in rules {
            var index = self.rules.count
            if let position {
                let indices = inChain(rule.family)
                let target = position - 1 + added.filter { $0.family == rule.family }.count
                if target < indices.count { index = indices[target] } else if let last = indices.last { index = last + 1 }
            }
            let stored = StoredRule(id: newID(), table: table, chain: chain, rule: rule)
            self.rules.insert(stored, at: index)
            added.append(stored)
        }
        return added
    }

    public mutating func deleteRule(id: String) throws {
        guard let index = rules.firstIndex(where: { $0.id == id }) else { throw Self.invalid("no rule with id \(DisplayText.quoted(id))") }
        rules.remove(at: index)
    }

    /// Deletes the first rule equal to each of `wanted` in the chain; all of them or none.
    public mutating func deleteRules(_ wanted: [Rule], table: NetfilterTable, chain: String) throws {
        var remaining = rules
        for rule in wanted {
            let text = RuleRenderer.render(rule)
            guard let index = remaining.firstIndex(where: { $0.table == table && $0.chain == chain && $0.family == rule.family && $0.text == text }) else {
                throw Self.invalid("chain \(chain) in \(table.rawValue) has no rule \"\(RuleRenderer.render(rule))\"")
            }
            remaining.remove(at: index)
        }
        rules = remaining
    }

    /// Deletes every rule (and, without a chain, the policies and user chains) of a table, or of all.
    public mutating func flush(table: NetfilterTable?, chain: String?) throws {
        if let chain {
            let keys = table.map { t in IPFamily.allCases.map { TableKey($0, t) } } ?? NetfilterTable.allCases.flatMap { t in IPFamily.allCases.map { TableKey($0, t) } }
            guard keys.contains(where: { chainExists(chain, $0) }) else { throw Self.invalid("no chain \(DisplayText.quoted(chain))\(table.map { " in table \($0.rawValue)" } ?? "")") }
        }
        rules.removeAll { (table == nil || $0.table == table) && (chain == nil || $0.chain == chain) }
        if chain == nil {
            policies = policies.filter { table != nil && $0.key.key.table != table }
            userChains = userChains.filter { table != nil && $0.key.table != table }
        }
    }

    public mutating func createChain(_ name: String, _ key: TableKey) throws {
        guard ChainNames.isValidUserChain(name), !key.table.builtinChains.contains(name) else {
            throw Self.invalid("chain name \(DisplayText.quoted(name)) is invalid or too long (letters, digits, -_., at most \(ChainNames.maxKernelLength - ChainNames.prefix.count) characters)")
        }
        userChains.insert(ChainRef(key, name))
    }

    /// Deletes a user chain and its rules; refused while a rule jumps to it.
    public mutating func deleteChain(_ name: String, _ key: TableKey) throws {
        guard userChains.contains(ChainRef(key, name)) else { throw Self.invalid("no chain \(DisplayText.quoted(name)) in \(key)") }
        if let user = try rules.first(where: { try $0.key == key && $0.rule().target.chain == name }) {
            throw Self.invalid("rule \(user.id) still jumps to \(name); delete it first")
        }
        rules.removeAll { $0.key == key && $0.chain == name }
        userChains.remove(ChainRef(key, name))
    }

    public mutating func setPolicy(_ policy: String, chain: String, _ key: TableKey) throws {
        guard key.table.builtinChains.contains(chain) else { throw Self.invalid("\(DisplayText.quoted(chain)) is not a built-in chain of \(key.table.rawValue)") }
        let upper = policy.uppercased()
        guard ["ACCEPT", "DROP"].contains(upper) else { throw Self.invalid("policy \(DisplayText.quoted(policy)): expected ACCEPT or DROP") }
        policies[ChainRef(key, chain)] = upper
    }

    // MARK: Sets

    public static func validateSetName(_ name: String) throws {
        guard Names.isValidSetName(name), !name.hasPrefix(IPSet.temporaryPrefix) else {
            throw invalid("set name \(DisplayText.quoted(name)): 1 to 31 printable characters, no spaces, quotes or backslashes")
        }
    }

    public static func parseEntries(_ texts: [String], _ spec: SetSpec, set: String) throws -> [SetEntry] {
        try texts.map { text in
            guard let entry = SetEntry(text, type: spec.type), entry.family == spec.family else {
                throw invalid("\(DisplayText.quoted(text)) is not a valid \(spec.family) element of \(spec.type.rawValue) set \(set)")
            }
            return entry
        }
    }

    public mutating func createSet(_ name: String, type: SetType, family: IPFamily, entries texts: [String] = []) throws {
        try Self.validateSetName(name)
        if sets[name] != nil { throw Self.invalid("set \(name) exists already") }
        var spec = SetSpec(type: type, family: family)
        spec.entries = try Self.parseEntries(texts, spec, set: name)
        sets[name] = spec
        try addElements([], to: name) // de-duplicates the initial elements
    }

    /// Adds elements (already present ones are fine). Linear in the set's size.
    public mutating func addElements(_ texts: [String], to name: String) throws {
        guard var spec = sets[name] else { throw Self.invalid("no docknfv set \(DisplayText.quoted(name))") }
        var seen = Set<SetEntry>()
        let all = spec.entries + (try Self.parseEntries(texts, spec, set: name))
        spec.entries = all.filter { seen.insert($0).inserted }
        sets[name] = spec
    }

    public mutating func deleteElements(_ texts: [String], from name: String) throws {
        guard var spec = sets[name] else { throw Self.invalid("no docknfv set \(DisplayText.quoted(name))") }
        let gone = Set(try Self.parseEntries(texts, spec, set: name))
        let present = Set(spec.entries)
        if let missing = gone.first(where: { !present.contains($0) }) { throw Self.invalid("\(missing) is not in set \(name)") }
        spec.entries.removeAll { gone.contains($0) }
        sets[name] = spec
    }

    /// Destroys a set; refused while a rule matches on it.
    public mutating func destroySet(_ name: String) throws {
        guard sets[name] != nil else { throw Self.invalid("no docknfv set \(DisplayText.quoted(name))") }
        if let user = try rules.first(where: { try $0.rule().matches.contains { if case .set(let s) = $0 { return s.name == name }; return false } }) {
            throw Self.invalid("rule \(user.id) matches on set \(name); delete it first")
        }
        sets[name] = nil
    }

    // MARK: Import

    /// Adds an iptables-save file's chains, policies and rules (appended after docknfv's), all or
    /// none. Returns how many rules it added.
    @discardableResult
    public mutating func merge(_ save: SaveFile, family: IPFamily) throws -> Int {
        var result = self
        let count = try result.merging(save, family: family)
        self = result
        return count
    }

    private mutating func merging(_ save: SaveFile, family: IPFamily) throws -> Int {
        var count = 0
        for section in save.tables {
            let key = TableKey(family, section.table)
            for chain in section.chains {
                if let policy = chain.policy {
                    if policy != "ACCEPT" { try setPolicy(policy, chain: chain.name, key) }
                } else {
                    try createChain(chain.name, key)
                }
            }
            // Each run of rules for one chain in one call (a save file lists a chain's rules together).
            var start = section.rules.startIndex
            while start < section.rules.endIndex {
                let chain = section.rules[start].chain
                var end = start + 1
                while end < section.rules.endIndex, section.rules[end].chain == chain { end += 1 }
                try addRules(section.rules[start..<end].map(\.rule), table: section.table, chain: chain)
                count += end - start
                start = end
            }
        }
        return count
    }
}

/// Host names in rules (`-s host.example`): getaddrinfo, one rule per address.
public enum HostResolver {
    public static func resolve(_ name: String, _ family: IPFamily?) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = family?.addressFamily ?? AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var out: [IPAddress] = []
        var node = result
        while let info = node {
            if info.pointee.ai_family == AF_INET, let sa = info.pointee.ai_addr {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { var a = $0.pointee.sin_addr; out.append(IPAddress(family: .v4, bytes: withUnsafeBytes(of: &a) { Array($0) })!) }
            } else if info.pointee.ai_family == AF_INET6, let sa = info.pointee.ai_addr {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { var a = $0.pointee.sin6_addr; out.append(IPAddress(family: .v6, bytes: withUnsafeBytes(of: &a) { Array($0) })!) }
            }
            node = info.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        return out.filter { seen.insert($0).inserted }
    }
}
