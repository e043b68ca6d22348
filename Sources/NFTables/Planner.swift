import RuleEngine

/// What one family's table should hold, in kernel names.
struct DesiredTable {
    struct DesiredRule {
        var fingerprint: UInt64
        var entry: RuleEntry
        var table: NetfilterTable
        /// 0-based position in its chain.
        var index: Int
    }
    struct DesiredSet {
        var shape: SetShape
        var spec: SetSpec
        /// Element keys as ranges (computed when needed: large sets that did not change never are).
        var ranges: [(first: [UInt8], last: [UInt8])] { SetShape.ranges(spec) }
    }

    var chains: [String: Snapshot.Chain] = [:]
    var rules: [String: [DesiredRule]] = [:]
    var sets: [String: DesiredSet] = [:]
    var isEmpty: Bool { chains.isEmpty && sets.isEmpty }

    /// The family's part of a ruleset. Built-in chains get a base chain when they have rules or a
    /// DROP policy (an ACCEPT policy needs no chain: ours accepts by default).
    init(_ ruleset: Ruleset, family: IPFamily) {
        for table in ruleset.tables where table.family == family {
            for builtin in table.table.builtinChains {
                let rules = table.entries[builtin] ?? []
                let policy = table.policies[builtin] ?? "ACCEPT"
                guard !rules.isEmpty || policy != "ACCEPT", let base = Layout.baseChain(table.table, builtin) else { continue }
                chains[Layout.chainName(table.table, builtin)] = .init(base: base, policy: policy == "DROP" ? 0 : 1)
            }
            for user in table.allUserChains { chains[Layout.chainName(table.table, user)] = .init(base: nil, policy: nil) }
            for (chain, entries) in table.entries where !entries.isEmpty {
                self.rules[Layout.chainName(table.table, chain)] = entries.enumerated().map {
                    DesiredRule(fingerprint: Fingerprint.of($0.element), entry: $0.element, table: table.table, index: $0.offset)
                }
            }
        }
        for (name, spec) in ruleset.sets where spec.family == family {
            sets[name] = DesiredSet(shape: SetShape(spec), spec: spec)
        }
    }
}

/// One change to a table, in the order the batch sends them.
enum Operation {
    /// The chain of an operation that names a kernel rule by handle.
    var chainNeedingHandle: String? {
        switch self {
        case .deleteRule(let chain, _): return chain
        case .addRule(let chain, _, let position) where position != .end: return chain
        default: return nil
        }
    }

    enum Position: Equatable { case end, after(UInt64), before(UInt64) }
    case addTable
    case deleteTable
    case addSet(String, SetShape)
    case deleteSet(String)
    case addElements(String, SetShape, [(first: [UInt8], last: [UInt8])])
    case deleteElements(String, SetShape, [(first: [UInt8], last: [UInt8])])
    case addChain(String, Snapshot.Chain)
    case setPolicy(String, Snapshot.Chain)
    case deleteRule(chain: String, handle: UInt64)
    case addRule(chain: String, rule: DesiredTable.DesiredRule, position: Position)
    case deleteChain(String)
}

/// Pure: the operations that turn `current` into `desired`. Rules are matched by fingerprint:
/// the common head and tail of a chain stay, only the middle is replaced, so adding or deleting
/// one rule is one operation whatever the chain's length.
enum Planner {
    static func plan(_ desired: DesiredTable, _ current: Snapshot) -> [Operation] {
        if desired.isEmpty { return current.tableExists ? [.deleteTable] : [] }
        var head: [Operation] = current.tableExists ? [] : [.addTable]
        var sets: [Operation] = [], replaced: [Operation] = [], chains: [Operation] = [], deletions: [Operation] = [], additions: [Operation] = [], tail: [Operation] = []

        for name in desired.sets.keys.sorted() {
            let want = desired.sets[name]!
            if let have = current.sets[name], have.shape == want.shape {
                if let spec = have.spec, spec == want.spec { continue }
                let gone: [(first: [UInt8], last: [UInt8])], new: [(first: [UInt8], last: [UInt8])]
                if let spec = have.spec, !want.shape.interval {
                    // A hash set known from docknfv's last change: only the elements that differ.
                    let (goneEntries, newEntries) = elementChanges(have: spec.entries, want: want.spec.entries)
                    gone = SetShape.ranges(SetSpec(type: spec.type, family: spec.family, entries: goneEntries))
                    new = SetShape.ranges(SetSpec(type: spec.type, family: spec.family, entries: newEntries))
                } else {
                    let haveRanges = have.ranges, wantRanges = want.ranges
                    let haveKeys = Set(haveRanges.map { RangeKey($0) }), wantKeys = Set(wantRanges.map { RangeKey($0) })
                    gone = haveRanges.filter { !wantKeys.contains(RangeKey($0)) }
                    new = wantRanges.filter { !haveKeys.contains(RangeKey($0)) }
                }
                if !gone.isEmpty { sets.append(.deleteElements(name, want.shape, gone)) }
                if !new.isEmpty { sets.append(.addElements(name, want.shape, new)) }
            } else {
                if current.sets[name] != nil { sets.append(.deleteSet(name)) }
                sets.append(.addSet(name, want.shape))
                let ranges = want.ranges
                if !ranges.isEmpty { sets.append(.addElements(name, want.shape, ranges)) }
            }
        }
        for name in current.sets.keys.sorted() where desired.sets[name] == nil { tail.append(.deleteSet(name)) }

        var recreated = Set<String>()
        for name in desired.chains.keys.sorted() {
            let want = desired.chains[name]!
            guard let have = current.chains[name] else { chains.append(.addChain(name, want)); continue }
            if have.base != want.base {
                // A base chain's hook cannot change in place: replace it (rules and all).
                replaced.append(.deleteChain(name)); chains.append(.addChain(name, want)); recreated.insert(name)
            } else if have.policy != want.policy {
                chains.append(.setPolicy(name, want))
            }
        }
        for name in current.chains.keys.sorted() where desired.chains[name] == nil { tail.insert(.deleteChain(name), at: 0) }

        for name in desired.chains.keys.sorted() {
            let have = recreated.contains(name) ? [] : current.rules[name] ?? []
            let (gone, added) = ruleChanges(want: desired.rules[name] ?? [], have: have)
            deletions += gone.map { .deleteRule(chain: name, handle: $0) }
            additions += added.map { .addRule(chain: name, rule: $0.0, position: $0.1) }
        }
        // Rules in chains that go away are deleted with their chain.
        return head + sets + replaced + chains + deletions + additions + tail
    }

    /// A hash set's elements to delete and to add. The common head and tail of the two lists are
    /// skipped by comparison; a few elements between them are looked up directly, and only a
    /// larger difference builds hash sets of both lists.
    static func elementChanges(have: [SetEntry], want: [SetEntry]) -> (gone: [SetEntry], new: [SetEntry]) {
        var head = 0
        while head < have.count, head < want.count, have[head] == want[head] { head += 1 }
        var tail = 0
        while tail < have.count - head, tail < want.count - head, have[have.count - 1 - tail] == want[want.count - 1 - tail] { tail += 1 }
        let haveMiddle = have[head..<(have.count - tail)], wantMiddle = want[head..<(want.count - tail)]
        if haveMiddle.count + wantMiddle.count <= 8 {
            // An element may have moved rather than changed: look for it in the whole other list.
            return (haveMiddle.filter { !want.contains($0) }, wantMiddle.filter { !have.contains($0) })
        }
        let haveEntries = Set(have), wantEntries = Set(want)
        return (have.filter { !wantEntries.contains($0) }, want.filter { !haveEntries.contains($0) })
    }

    /// The kernel rules to delete (handles) and the desired rules to add (with where), keeping the
    /// longest run of rules already in place: matching rules are anchors, and the longest
    /// increasing subsequence of their kernel positions stays untouched.
    static func ruleChanges(want: [DesiredTable.DesiredRule], have: [Snapshot.KernelRule])
        -> ([UInt64], [(DesiredTable.DesiredRule, Operation.Position)]) {
        // The common head and tail stay as they are: only the span between them is matched, so
        // one rule changed among thousands costs a comparison per rule and no hashing.
        var head = 0
        while head < want.count, head < have.count, have[head].fingerprint == want[head].fingerprint { head += 1 }
        var tail = 0
        while tail < want.count - head, tail < have.count - head,
              have[have.count - 1 - tail].fingerprint == want[want.count - 1 - tail].fingerprint { tail += 1 }
        if head == 0 && tail == 0 { return matchedChanges(want: want, have: have) }
        let (gone, added) = matchedChanges(want: Array(want[head..<(want.count - tail)]), have: Array(have[head..<(have.count - tail)]))
        // Rules added in the middle go after the head's last rule, or before the tail's first.
        let positioned = added.map { rule, position -> (DesiredTable.DesiredRule, Operation.Position) in
            guard position == .end else { return (rule, position) }
            if tail > 0 { return (rule, .before(have[have.count - tail].handle)) }
            return (rule, .end)
        }
        return (gone, positioned)
    }

    /// `ruleChanges` of the span that differs: anchors by fingerprint, the longest run kept.
    static func matchedChanges(want: [DesiredTable.DesiredRule], have: [Snapshot.KernelRule])
        -> ([UInt64], [(DesiredTable.DesiredRule, Operation.Position)]) {
        // The n-th kernel rule with a fingerprint pairs with the n-th desired rule with it, so
        // repeated rules anchor too.
        struct Occurrence: Hashable { var fingerprint: UInt64; var number: Int }
        var havePosition: [Occurrence: Int] = [:], seen: [UInt64: Int] = [:]
        for (index, rule) in have.enumerated() {
            guard let fingerprint = rule.fingerprint else { continue }
            seen[fingerprint, default: 0] += 1
            havePosition[Occurrence(fingerprint: fingerprint, number: seen[fingerprint]!)] = index
        }
        seen = [:]
        // (desired index, kernel index) of matches, in desired order.
        let pairs: [(Int, Int)] = want.enumerated().compactMap { index, rule in
            seen[rule.fingerprint, default: 0] += 1
            return havePosition[Occurrence(fingerprint: rule.fingerprint, number: seen[rule.fingerprint]!)].map { (index, $0) }
        }
        let kept = longestIncreasing(pairs)
        let keptHave = Set(kept.map(\.1))
        let gone = have.enumerated().filter { !keptHave.contains($0.offset) }.map(\.element.handle)
        // desired index → kernel handle of the anchors.
        var anchorAt: [Int: UInt64] = [:]
        for (wantIndex, haveIndex) in kept { anchorAt[wantIndex] = have[haveIndex].handle }
        var added: [(DesiredTable.DesiredRule, Operation.Position)] = []
        var index = 0
        while index < want.count {
            guard anchorAt[index] == nil else { index += 1; continue }
            var end = index
            while end < want.count && anchorAt[end] == nil { end += 1 }
            let run = want[index..<end]
            if end == want.count {
                // A run at the end of the chain goes after every kept rule: appended, no handle needed.
                added += run.map { ($0, .end) }
            } else if index > 0, let previous = anchorAt[index - 1] {
                // Each goes right after the anchor before the run: add them last to first.
                added += run.reversed().map { ($0, .after(previous)) }
            } else if let next = anchorAt[end] {
                added += run.map { ($0, .before(next)) }
            }
            index = end
        }
        return (gone, added)
    }

    /// Longest subsequence of `pairs` (sorted by .0) whose .1 increases (patience sorting).
    static func longestIncreasing(_ pairs: [(Int, Int)]) -> [(Int, Int)] {
        var tails: [Int] = [] // index into pairs of the smallest tail of each length
        var previous = [Int](repeating: -1, count: pairs.count)
        for (index, pair) in pairs.enumerated() {
            var low = 0, high = tails.count
            while low < high {
                let middle = (low + high) / 2
                if pairs[tails[middle]].1 < pair.1 { low = middle + 1 } else { high = middle }
            }
            if low > 0 { previous[index] = tails[low - 1] }
            if low == tails.count { tails.append(index) } else { tails[low] = index }
        }
        var out: [(Int, Int)] = []
        var cursor = tails.last ?? -1
        while cursor >= 0 { out.append(pairs[cursor]); cursor = previous[cursor] }
        return out.reversed()
    }

    /// What differs, for `check`.
    static func drift(_ operations: [Operation], family: IPFamily, table: String) -> [(TableKey, DriftItem)] {
        let tableName = "\(family == .v4 ? "ip" : "ip6") \(table)"
        func key(_ chain: String) -> TableKey { TableKey(family, Layout.split(chain)?.0 ?? .filter) }
        func user(_ chain: String) -> String { Layout.split(chain)?.1 ?? chain }
        return operations.compactMap { operation in
            switch operation {
            case .addTable: return (TableKey(family, .filter), .missingTable(tableName))
            case .deleteTable: return (TableKey(family, .filter), .unexpectedTable(tableName))
            case .addSet(let name, _): return (TableKey(family, .filter), .missingSet(name))
            case .deleteSet(let name): return (TableKey(family, .filter), .unexpectedSet(name))
            case .addElements(let name, _, let ranges): return (TableKey(family, .filter), .setContent(name: name, missing: ranges.count, unexpected: 0))
            case .deleteElements(let name, _, let ranges): return (TableKey(family, .filter), .setContent(name: name, missing: 0, unexpected: ranges.count))
            case .addChain(let name, _): return (key(name), .missingChain(name))
            case .setPolicy(let name, let chain): return (key(name), .policy(chain: user(name), wanted: chain.policy == 0 ? "DROP" : "ACCEPT"))
            case .deleteChain(let name): return (key(name), .unexpectedChain(name))
            case .deleteRule(let chain, _): return (key(chain), .unexpectedRules(chain: chain, count: 1))
            case .addRule(let chain, let rule, _):
                return (key(chain), .missingRule(chain: user(chain), position: rule.index + 1, rule: rule.entry.text))
            }
        }
    }
}

/// A range as a hashable value.
struct RangeKey: Hashable {
    var first: [UInt8], last: [UInt8]
    init(_ range: (first: [UInt8], last: [UInt8])) { first = range.first; last = range.last }
}
