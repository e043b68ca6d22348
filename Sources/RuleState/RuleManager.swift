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
        try store.locked {
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
            return (new, report)
        }
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
