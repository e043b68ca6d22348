import RuleEngine

/// Read–modify–apply–save of docknfvctl's rules in one namespace: under the state lock, load the
/// desired state, change it, let the backend validate every rule (a bad one fails before the
/// kernel is touched) and apply the change, and only then save. If the save fails, the kernel is
/// put back. Runs in the current thread's network namespace.
public struct RuleManager {
    public var store: StateStore
    public var choice: BackendChoice
    public var dryRun: Bool
    public var selector = BackendSelector()
    /// Makes the backend for a kind (replaceable in tests).
    public var makeBackend: (BackendKind) -> any RuleBackend = { BackendSelector.backend($0) }

    /// States of this many rules or more keep a journal for appends (`append`).
    public static let journalFrom = 200

    public init(store: StateStore, backend choice: BackendChoice = .auto, dryRun: Bool = false) {
        self.store = store
        self.choice = choice
        self.dryRun = dryRun
    }

    public func selection(for state: DesiredState) throws -> BackendSelection {
        try selector.select(choice, recorded: state.backend, stateHasRules: !state.isEmpty)
    }

    /// Changes the desired state and applies it. Returns the new state and what was done.
    @discardableResult
    public func mutate(_ change: (inout DesiredState) throws -> Void) throws -> (DesiredState, ApplyReport) {
        try store.locked { try mutateLocked(change) }
    }

    private func mutateLocked(_ change: (inout DesiredState) throws -> Void) throws -> (DesiredState, ApplyReport) {
        let old = try store.load()
        var new = old
        try change(&new)
        let selection = try selection(for: old)
        let backend = makeBackend(selection.kind)
        var desired = new.ruleset()
        try backend.validate(desired)
        if dryRun { return (new, ApplyReport()) }
        new.backend = selection.kind
        new.touched = Set(desired.tables.filter { !$0.isEmpty }.map(\.key))
        desired.kernelMark = nil
        try store.checkSavable(new) // before the kernel is touched
        var previous = old.ruleset()
        if old.backend != selection.kind { previous.kernelMark = nil }
        let report = try backend.apply(desired, previous: previous)
        new.kernelMark = report.kernelMark
        do { try store.save(new) } catch {
            _ = try? backend.apply(previous, previous: desired) // keep kernel and file in agreement
            throw error
        }
        // Where a whole save costs more than a journal line, the next append goes through one
        // (best effort: without it, the next append saves the whole state again).
        if new.rules.count >= Self.journalFrom { try? store.startJournal(new) }
        return (new, report)
    }

    /// Appends rules to a chain (`rule add` without a position): the result of
    /// `mutate { $0.addRules(rules, table:, chain:) }`, with the new rules and the new state's backend.
    ///
    /// When the journal holds what the append needs (see `Journal`) and the backend can append
    /// against an unchanged kernel, this neither reads nor rewrites the other rules: it validates
    /// the new rules alone, sends them, and appends one journal line. Anything else — a user
    /// chain (its hooks depend on every jump to it), a jump, an empty chain, a set it does not
    /// know, another writer in between — takes the whole read–modify–apply–save path.
    public func append(_ rules: [Rule], table: NetfilterTable, chain: String) throws -> (added: [StoredRule], backend: BackendKind?, report: ApplyReport) {
        try store.locked {
            if !dryRun, let fast = try appendFromJournal(rules, table: table, chain: chain) { return fast }
            var added: [StoredRule] = []
            let (state, report) = try mutateLocked { added = try $0.addRules(rules, table: table, chain: chain) }
            return (added, state.backend, report)
        }
    }

    private func appendFromJournal(_ rules: [Rule], table: NetfilterTable, chain: String) throws -> (added: [StoredRule], backend: BackendKind?, report: ApplyReport)? {
        guard !rules.isEmpty, table.builtinChains.contains(chain), let journal = store.journalForAppend() else { return nil }
        var summary = journal.summary
        guard let kind = summary.backend, choice == .auto || choice.rawValue == kind.rawValue else { return nil }
        for rule in rules {
            guard rule.target.chain == nil, summary.counts[DesiredState.ChainRef(TableKey(rule.family, table), chain)] != nil else { return nil }
            for case .set(let match) in rule.matches where summary.sets[match.name] == nil { return nil }
        }
        var ids = DesiredState()
        ids.nextID = summary.nextID
        let added = rules.map { StoredRule(id: ids.newID(), table: table, chain: chain, rule: $0) }
        // The same checks as a whole apply, on the new rules in their chain with the table's
        // user chains and the sets.
        let sets = summary.setSpecs
        var tables: [TableKey: TableRules] = [:]
        for rule in added {
            tables[rule.key, default: TableRules(family: rule.family, table: table, entries: [:],
                                                 userChains: Set(summary.userChains.filter { $0.key == rule.key }.map(\.chain)))]
                .entries[chain, default: []].append(rule.entry)
        }
        let backend = makeBackend(kind)
        try backend.validate(Ruleset(owner: .cli, tables: tables.keys.sorted().map { tables[$0]! }, sets: sets))
        var check = DesiredState()
        check.rules = added
        try store.checkSavable(check)
        var appended: [AppendedRule] = []
        for rule in added {
            let ref = DesiredState.ChainRef(rule.key, chain)
            appended.append(AppendedRule(key: rule.key, chain: chain, entry: rule.entry, index: summary.counts[ref, default: 0]))
            summary.counts[ref, default: 0] += 1
        }
        guard let report = try backend.append(appended, owner: .cli, sets: sets, mark: summary.kernelMark) else { return nil }
        summary.nextID = ids.nextID
        summary.kernelMark = report.kernelMark
        do { try store.appendToJournal(added, summary) } catch {
            // Keep kernel and state in agreement: put the kernel back to the stored state.
            if let state = try? store.load() {
                var previous = state.ruleset()
                previous.kernelMark = nil
                _ = try? backend.apply(state.ruleset(), previous: previous)
            }
            throw error
        }
        return (added, kind, report)
    }

    /// Re-applies the stored state (e.g. at container start). Needs no write access.
    @discardableResult
    public func apply() throws -> ApplyReport {
        try store.lockedForReading {
            let state = try store.load()
            let backend = makeBackend(try selection(for: state).kind)
            try backend.validate(state.ruleset())
            if dryRun { return ApplyReport() }
            var previous = state.ruleset()
            previous.kernelMark = nil // `apply` is the repair: always read the kernel
            return try backend.apply(state.ruleset(), previous: previous)
        }
    }

    /// What the kernel holds that differs from the stored state, per table.
    public func diff() throws -> [(TableKey, TableDrift)] {
        try store.lockedForReading {
            let state = try store.load()
            return try makeBackend(try selection(for: state).kind).check(state.ruleset())
        }
    }

    /// Moves docknfv's rules to the other backend. The new copy is in force before the old one is
    /// removed, so there is no moment without either; a failure leaves the old one as it was.
    public func migrate(to kind: BackendKind) throws -> (from: BackendKind, report: ApplyReport) {
        try store.locked {
            var state = try store.load()
            let from = try selector.select(.auto, recorded: state.backend, stateHasRules: !state.isEmpty).kind
            guard from != kind else { return (from, ApplyReport()) }
            let target = makeBackend(kind), source = makeBackend(from)
            try target.validate(state.ruleset())
            if dryRun { return (from, ApplyReport()) }
            var current = state.ruleset()
            current.kernelMark = nil
            let report = try target.apply(current, previous: Ruleset())
            do {
                _ = try source.remove(current)
                state.backend = kind
                state.kernelMark = nil
                try store.save(state)
            } catch {
                _ = try? source.apply(state.ruleset(), previous: state.ruleset())
                _ = try? target.remove(state.ruleset())
                throw error
            }
            return (from, report)
        }
    }
}
