import IPSet
import IPTables
import Rules

/// What an operation did in the kernel.
public struct ApplyReport: Sendable, Equatable {
    /// Tables committed (in order).
    public var committed: [TableKey] = []
    /// Tables already as wanted (no commit).
    public var unchanged: [TableKey] = []
    /// Sets created, refilled or destroyed.
    public var sets: [String] = []
}

/// Read–modify–apply–save of docknfv's rules: under the state lock, load the desired state, change
/// it, build every rule (a bad one fails before the kernel is touched), commit each table that
/// differs, and only then save. If a later table fails, the tables already committed are put back.
public struct RuleManager {
    public var store: StateStore
    public var engine: any RuleBackend
    public var dryRun: Bool

    public init(store: StateStore, engine: any RuleBackend = TableEngine(), dryRun: Bool = false) {
        self.store = store
        self.engine = engine
        self.dryRun = dryRun
    }

    /// Changes the desired state and applies it. Returns the new state and what was committed.
    @discardableResult
    public func mutate(_ change: (inout DesiredState) throws -> Void) throws -> (DesiredState, ApplyReport) {
        try store.locked {
            let old = try store.load()
            var new = old
            try change(&new)
            let report = try transition(from: old, to: new)
            if !dryRun {
                new.touched = Set(new.tableRules().filter { !$0.isEmpty }.map { TableKey($0.family, $0.table) })
                do { try store.save(new) } catch {
                    _ = try? transition(from: new, to: old) // keep kernel and file in agreement
                    throw error
                }
            }
            return (new, report)
        }
    }

    /// Re-applies the stored state (e.g. at container start).
    @discardableResult
    public func apply() throws -> ApplyReport {
        try store.locked {
            let state = try store.load()
            return try transition(from: state, to: state)
        }
    }

    /// What the kernel holds that differs from the stored state, per table.
    public func diff() throws -> [(TableKey, TableDrift)] {
        let state = try store.load()
        return try state.tableRules().map { (TableKey($0.family, $0.table), try engine.check($0)) }
    }

    func transition(from old: DesiredState, to new: DesiredState) throws -> ApplyReport {
        var tables = new.tableRules()
        // A rule may only match on a set docknfv manages (or one that exists already).
        for stored in new.rules {
            for case .set(let set) in stored.rule.matches where new.sets[set.name] == nil && !IPSet.exists(set.name) {
                throw IPTablesError.build(rule: stored.text, reason: "ipset \(set.name) does not exist (create it with docknfvctl ipset create)")
            }
        }
        // Tables the old state used but the new one does not: apply them empty (cleans them up).
        let newKeys = Set(tables.map { TableKey($0.family, $0.table) })
        for stale in old.tableRules() where !newKeys.contains(TableKey(stale.family, stale.table)) {
            tables.append(TableRules(family: stale.family, table: stale.table))
        }
        // Policies docknfv set before and no longer wants go back to the kernel default, ACCEPT.
        for (ref, _) in old.policies where new.policies[ref] == nil {
            if let index = tables.firstIndex(where: { $0.family == ref.key.family && $0.table == ref.key.table }) {
                tables[index].policies[ref.chain] = "ACCEPT"
            }
        }
        for table in tables { _ = try engine.validate(table) }
        var report = ApplyReport()
        if dryRun { return report }
        // Sets first: rules that match on them need them to exist.
        var refilled: [String] = []
        do {
            for (name, spec) in new.sets.sorted(by: { $0.key < $1.key }) where !Self.kernelHolds(name, spec) {
                try IPSet.replace(name, type: spec.type, family: spec.family, entries: spec.entries)
                refilled.append(name)
                report.sets.append(name)
            }
        } catch {
            restoreSets(refilled, old: old)
            throw error
        }
        let previous = Dictionary(uniqueKeysWithValues: old.tableRules().map { (TableKey($0.family, $0.table), $0) })
        for table in tables {
            let key = TableKey(table.family, table.table)
            do {
                if try engine.apply(table) { report.committed.append(key) } else { report.unchanged.append(key) }
            } catch {
                for done in report.committed.reversed() {
                    _ = try? engine.apply(previous[done] ?? TableRules(family: done.family, table: done.table))
                }
                restoreSets(refilled, old: old)
                throw error
            }
        }
        // Sets no longer wanted go last, once no docknfv rule refers to them.
        for name in old.sets.keys.sorted() where new.sets[name] == nil && IPSet.exists(name) {
            try IPSet.destroy(name)
            report.sets.append(name)
        }
        return report
    }

    static func kernelHolds(_ name: String, _ spec: DesiredState.SetSpec) -> Bool {
        guard let listing = try? IPSet.list(name) else { return false }
        return listing.type == spec.type.rawValue && listing.family == spec.family && Set(listing.entries) == Set(spec.entries)
    }

    func restoreSets(_ names: [String], old: DesiredState) {
        for name in names {
            if let spec = old.sets[name] { try? IPSet.replace(name, type: spec.type, family: spec.family, entries: spec.entries) }
            else { try? IPSet.destroy(name) }
        }
    }
}
