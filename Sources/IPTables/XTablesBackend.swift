import IPSet
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// The x_tables backend: each owner's rules in legacy x_tables through libiptc (one commit per
/// family and table, under the xtables lock), its sets as ipsets over nfnetlink. x_tables has no
/// tables of docknfv's own: owners are kept apart by their chains' names (`OwnerChains`) and the
/// comments on their jumps out of the built-in chains they share, whose policies stay docknfvctl's.
/// ipset names are global to the namespace: callers name each owner's sets apart.
public struct XTablesBackend: RuleBackend {
    public var kind: BackendKind { .iptables }
    public var name: String { "legacy x_tables through libiptc (chains DNFV-*), ipsets" }
    /// Settings (lock, retries); each call works with a copy for the ruleset's owner.
    public var engine = TableEngine()

    public init() {}

    func engine(for owner: Owner) -> TableEngine {
        var engine = engine
        engine.chains = OwnerChains(owner)
        return engine
    }

    /// Builds the entries of the rules not already in a state docknfv wrote (the others were built
    /// when they were added; `apply` builds them all anyway, before anything is committed).
    public func validate(_ desired: Ruleset) throws {
        try desired.validate()
        let engine = engine(for: desired.owner)
        let pending = Set(desired.sets.keys)
        for table in desired.tables {
            var fresh = table
            fresh.entries = table.entries.mapValues { $0.filter { !$0.trusted } }
            // Jumps into chains that only hold trusted rules must still resolve.
            fresh.userChains = Set(table.allUserChains)
            _ = try wrap { try engine.validate(fresh, pendingSets: pending) }
        }
    }

    public func apply(_ desired: Ruleset, previous: Ruleset) throws -> ApplyReport {
        try desired.validate()
        let engine = engine(for: desired.owner)
        for table in desired.tables { try wrap { try engine.requireFits(table) } }
        var tables = desired.tables
        // A rule may only match on a set docknfv manages (or one that exists already).
        for name in try desired.referencedSets().sorted() where desired.sets[name] == nil && !IPSet.exists(name) {
            throw EngineError(.invalidInput, "ipset \(name) does not exist (create it with docknfvctl ipset create)")
        }
        // Tables the previous ruleset used but this one does not: apply them empty (cleans them up).
        let wanted = Set(tables.map(\.key))
        for stale in previous.tables where !wanted.contains(stale.key) { tables.append(TableRules(family: stale.family, table: stale.table)) }
        // Policies docknfv set before and no longer wants go back to the kernel default, ACCEPT
        // (only docknfvctl's rulesets have policies).
        for old in previous.tables where desired.owner == .cli {
            for chain in old.policies.keys {
                guard let index = tables.firstIndex(where: { $0.key == old.key }), tables[index].policies[chain] == nil else { continue }
                tables[index].policies[chain] = "ACCEPT"
            }
        }
        var report = ApplyReport()
        // Sets first: rules that match on them need them to exist. Under the xtables lock, like
        // every docknfv run's set refills: another run's temporary set is never mistaken for a
        // killed run's leftover (those are destroyed here).
        var refilled: [String] = []
        do {
            let lock = try XtablesLock(path: engine.lockPath, timeout: engine.lockTimeout)
            defer { withExtendedLifetime(lock) {} }
            report.sets += IPSet.removeLeftoverTemporaries()
            for (name, spec) in desired.sets.sorted(by: { $0.key < $1.key }) where !Self.kernelHolds(name, spec) {
                try IPSet.replace(name, type: spec.type, family: spec.family, entries: spec.entries)
                refilled.append(name)
                report.sets.append(name)
            }
        } catch {
            restoreSets(refilled, previous: previous)
            throw Self.engineError(error)
        }
        let before = Dictionary(uniqueKeysWithValues: previous.tables.map { ($0.key, $0) })
        for table in tables.sorted(by: { $0.key < $1.key }) {
            do {
                if try engine.apply(table) { report.committed.append(table.key) } else { report.unchanged.append(table.key) }
            } catch {
                for done in report.committed.reversed() { _ = try? engine.apply(before[done] ?? TableRules(family: done.family, table: done.table)) }
                restoreSets(refilled, previous: previous)
                throw Self.engineError(error)
            }
        }
        // Sets no longer wanted go last, once no docknfv rule refers to them.
        for name in previous.sets.keys.sorted() where desired.sets[name] == nil && IPSet.exists(name) {
            try wrap { try IPSet.destroy(name) }
            report.sets.append(name)
        }
        return report
    }

    /// Appends rules of one table at the end of the owner's chains, when each chain holds exactly
    /// the rules docknfv left there (counted) behind the owner's jump. x_tables has no generation
    /// to compare, so that count is the check; anything else (several tables, a chain that
    /// differs) returns nil and the caller applies the whole ruleset.
    public func append(_ rules: [AppendedRule], owner: Owner, sets: [String: SetSpec], mark: KernelMark?) throws -> ApplyReport? {
        guard let key = rules.first?.key, rules.allSatisfy({ $0.key == key }) else { return nil }
        let parsed = try rules.map { (chain: $0.chain, rule: try $0.entry.rule(), index: $0.index) }
        guard try wrap({ try engine(for: owner).append(parsed, family: key.family, table: key.table) }) else { return nil }
        var report = ApplyReport()
        report.committed = [key]
        return report
    }

    public func check(_ desired: Ruleset) throws -> [(TableKey, TableDrift)] {
        try validate(desired)
        let engine = engine(for: desired.owner)
        var out = try desired.tables.map { table in (table.key, try wrap { try engine.check(table) }) }
        func report(_ item: DriftItem, at key: TableKey) {
            if let index = out.firstIndex(where: { $0.0 == key }) { out[index].1.items.append(item) } else { out.append((key, TableDrift(items: [item]))) }
        }
        for (name, spec) in desired.sets.sorted(by: { $0.key < $1.key }) {
            let key = TableKey(spec.family, .filter)
            let item: DriftItem
            if let listing = try? IPSet.list(name) {
                guard listing.type != spec.type.rawValue || listing.family != spec.family || Set(listing.entries) != Set(spec.entries) else { continue }
                let have = Set(listing.entries), want = Set(spec.entries)
                item = .setContent(name: name, missing: want.subtracting(have).count, unexpected: have.subtracting(want).count)
            } else {
                item = .missingSet(name)
            }
            report(item, at: key)
        }
        // A killed run's temporary set is not in sync with anything; the next apply destroys it.
        for name in IPSet.temporaries() { report(.unexpectedSet(name), at: TableKey((try? IPSet.list(name))?.family ?? .v4, .filter)) }
        return out
    }

    /// Every table `previous` used and every table the namespace has is cleared of the owner's
    /// chains and jumps, so the owner alone is enough (a CNI DEL may come without its state).
    /// Only the sets `previous` names are destroyed: ipset names say nothing of their owner.
    public func remove(_ previous: Ruleset) throws -> Bool {
        let engine = engine(for: previous.owner)
        var policies: [TableKey: [String]] = [:]
        for table in previous.tables where previous.owner == .cli { policies[table.key, default: []] += table.policies.keys }
        var changed = false
        for key in Set(previous.tables.map(\.key) + TableEngine.instantiatedTables()).sorted() {
            changed = try wrap { try engine.remove(family: key.family, table: key.table, policies: policies[key] ?? []) } || changed
        }
        for name in previous.sets.keys.sorted() where IPSet.exists(name) {
            try wrap { try IPSet.destroy(name) }
            changed = true
        }
        return changed
    }

    public func namespaceHoldsRules() -> Bool { engine.holdsAnyRules() }

    static func kernelHolds(_ name: String, _ spec: SetSpec) -> Bool {
        guard let listing = try? IPSet.list(name) else { return false }
        return listing.type == spec.type.rawValue && listing.family == spec.family && Set(listing.entries) == Set(spec.entries)
    }

    func restoreSets(_ names: [String], previous: Ruleset) {
        guard !names.isEmpty else { return }
        let lock = try? XtablesLock(path: engine.lockPath, timeout: engine.lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        for name in names {
            if let spec = previous.sets[name] { try? IPSet.replace(name, type: spec.type, family: spec.family, entries: spec.entries) }
            else { try? IPSet.destroy(name) }
        }
    }

    func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw Self.engineError(error) }
    }

    /// The backend's errors as the engine's one error type.
    static func engineError(_ error: any Error) -> EngineError {
        if let error = error as? EngineError { return error }
        if let error = error as? IPTablesError {
            switch error {
            case .build, .unknownChain, .targetNotAllowed, .chainName: return EngineError(.invalidInput, error.description, cause: error)
            case .policyNotAllowed: return EngineError(.unsupported, error.description, cause: error)
            case .lockTimeout: return EngineError(.busy, error.description, cause: error)
            case .foreignReference, .sharedPrefix: return EngineError(.conflict, error.description, cause: error)
            case .lock: return EngineError(.io, error.description, cause: error)
            case .libiptc(_, _, _, let errno):
                return EngineError(errno == EPERM || errno == EACCES ? .permission : errno == EAGAIN ? .busy : .kernel, error.description, cause: error)
            }
        }
        if let error = error as? IPSetError {
            return EngineError(error.code == EPERM ? .permission : .kernel, error.description, cause: error)
        }
        return EngineError(.kernel, "\(error)")
    }
}
