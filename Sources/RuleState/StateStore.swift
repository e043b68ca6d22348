import RuleEngine
import ShortProcess
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

/// The state file (`rules.json` in the state directory), written atomically, and a lock file that
/// serialises docknfv processes doing read–modify–write on it. The directory is checked before
/// use: only root (or the current user) may be able to write to it. Rules are stored as their
/// canonical text and parsed only when a backend needs them.
public struct StateStore: Sendable {
    public let directory: String
    public var path: String { directory + "/rules.json" }
    var lockPath: String { directory + "/rules.lock" }

    public init(directory: String) { self.directory = directory }

    /// Runs `body` holding the state lock (bounded wait). Creates the directory (0700) if needed.
    public func locked<T>(timeout: Double = 30, _ body: () throws -> T) throws -> T {
        do { try StateDirectory.prepare(directory) } catch { throw EngineError(.io, error.description, cause: error) }
        let lock: LockFile
        do { lock = try LockFile.acquire(lockPath, timeout: timeout) } catch {
            throw EngineError(error.isTimeout ? .busy : .io, error.description, cause: error)
        }
        defer { lock.release() }
        return try body()
    }

    /// Runs `body` for a reader (apply, diff, status): a read-only state directory is fine, and
    /// so is one where the lock cannot be created (nobody can be writing there either).
    public func lockedForReading<T>(timeout: Double = 30, _ body: () throws -> T) throws -> T {
        let exists: Bool
        do { exists = try StateDirectory.checkReadable(directory) } catch { throw EngineError(.io, error.description, cause: error) }
        guard exists else { return try body() }
        let lock: LockFile
        do { lock = try LockFile.acquire(lockPath, timeout: timeout, kind: .shared) } catch {
            if case .readOnly = error { return try body() }
            throw EngineError(error.isTimeout ? .busy : .io, error.description, cause: error)
        }
        defer { lock.release() }
        return try body()
    }

    /// The journal of rules appended since the state file was written (see `Journal`).
    var journalPath: String { directory + "/rules.journal" }
    /// Past this size an append rewrites the state file instead (and starts a new journal).
    static let journalLimit = 1 << 20

    /// The desired state: the state file and the rules its journal appended since.
    public func load() throws -> DesiredState {
        let state = try loadState()
        ShortProcess.keepUntilExit(state) // freed by the exit in docknfvctl, not rule by rule
        return state
    }

    private func loadState() throws -> DesiredState {
        do { try StateDirectory.checkReadable(directory) } catch { throw EngineError(.io, error.description, cause: error) }
        // A writer may replace the state file between the two reads (it holds the lock; a reader
        // need not): read again until the journal was read against the file it extends.
        var attempt = 0
        while true {
            var info = stat()
            let bytes: [UInt8]?
            do { bytes = try AtomicFile.read(path, status: &info) } catch { throw EngineError(.io, "cannot read \(path): \(error)", cause: error) }
            guard let bytes else { return DesiredState() }
            var state = try Self.decode(bytes, path: path)
            let read = Journal.SnapshotIdentity(info)
            let journalBytes: [UInt8]?
            do { journalBytes = try AtomicFile.read(journalPath) } catch { throw EngineError(.io, "cannot read \(journalPath): \(error)", cause: error) }
            if let journalBytes {
                let journal: Journal
                do { journal = try Journal.parse(journalBytes, wholeRecords: true) } catch {
                    throw EngineError(.invalidState, "journal \(journalPath) is corrupt: \(error). It was left as it is; fix or move it away, then run again")
                }
                if journal.snapshot == read {
                    try replay(journal, into: &state)
                    return state
                }
            }
            // No journal, or one of an earlier state file (its rules are in this one) — unless
            // the file was replaced while being read: a writer saved a new one and removed the
            // journal this file went with. Then read again.
            if Journal.SnapshotIdentity.of(path) == read { return state }
            attempt += 1
            guard attempt < 5 else { throw EngineError(.busy, "\(path) kept changing while being read; try again") }
        }
    }

    /// Adds the journal's rules to the state read from the file it extends.
    func replay(_ journal: Journal, into state: inout DesiredState) throws {
        func corrupt(_ detail: String) -> EngineError {
            EngineError(.invalidState, "journal \(journalPath) is corrupt: \(detail). It was left as it is; fix or move it away, then run again")
        }
        guard !journal.records.isEmpty else { return }
        // Ids the journal hands out are above every number the file uses (its nextId is): only
        // others are looked up among the file's.
        let firstNew = state.nextID
        var fileIDs: Set<String>?
        var journalIDs = Set<String>()
        var highest = 0
        for record in journal.records {
            for rule in record.added {
                var fresh = false
                if Self.isCanonicalID(rule.id), let number = Int(rule.id.dropFirst()), number >= firstNew {
                    guard number <= Self.maxID else { throw corrupt("rule id \(rule.id) is out of range (at most r\(Self.maxID))") }
                    fresh = true
                    highest = max(highest, number)
                }
                if !fresh && fileIDs == nil { fileIDs = Set(state.rules.map(\.id)) }
                guard Self.isValidID(rule.id), journalIDs.insert(rule.id).inserted, fresh || !fileIDs!.contains(rule.id) else {
                    throw corrupt("rule id \(DisplayText.quoted(rule.id)) is invalid or given twice")
                }
                guard state.chainExists(rule.chain, rule.key) else { throw corrupt("rule \(rule.id): no chain \(DisplayText.quoted(rule.chain)) in \(rule.key)") }
                guard !rule.text.isEmpty, !Self.hasControlCharacters(rule.text) else {
                    throw corrupt("rule \(DisplayText.quoted(rule.id)): empty or with control characters")
                }
                state.rules.append(rule)
            }
        }
        let summary = journal.summary
        state.backend = summary.backend
        state.kernelMark = summary.kernelMark
        state.nextID = max(state.nextID, summary.nextID, highest + 1)
    }

    /// The journal an append can extend: nil when there is none, when it belongs to an earlier
    /// state file, ends in an unfinished line or has grown past `journalLimit` (the caller then
    /// loads and saves the whole state, which also reports a corrupt journal).
    func journalForAppend() -> Journal? {
        guard let bytes = try? AtomicFile.read(journalPath), bytes.count < Self.journalLimit,
              let journal = try? Journal.parse(bytes, wholeRecords: false), !journal.torn,
              Journal.SnapshotIdentity.of(path) == journal.snapshot,
              journal.records.allSatisfy({ $0.added.allSatisfy { Self.isValidID($0.id) } }) else { return nil }
        return journal
    }

    /// Starts a journal for the state file as it is now (after a save).
    func startJournal(_ state: DesiredState) throws {
        guard let identity = Journal.SnapshotIdentity.of(path) else { return }
        do { try AtomicFile.write(journalPath, contents: Journal.headerLine(identity, Journal.Summary(state)), mode: 0o600) } catch {
            throw EngineError(.io, "cannot write \(journalPath): \(error)", cause: error)
        }
    }

    /// Records rules appended (and the summary after them).
    func appendToJournal(_ added: [StoredRule], _ summary: Journal.Summary) throws {
        do { try Journal.append(Journal.recordLine(added, summary), to: journalPath) } catch {
            throw EngineError(.io, "cannot write \(journalPath): \(error)", cause: error)
        }
    }

    /// Refuses a state docknfv could not read back (a bad name would lock every later command
    /// out): what `decode` checks of each name and text, without encoding anything. `save` runs it;
    /// callers run it first too when the kernel is changed before the save.
    public func checkSavable(_ state: DesiredState) throws {
        func refuse(_ what: String) -> EngineError {
            EngineError(.invalidState, "the state cannot be saved to \(path): \(what) (it could not be read back); nothing was changed")
        }
        for chain in state.userChains where !ChainNames.isValidUserChain(chain.chain) { throw refuse("invalid chain name \(DisplayText.quoted(chain.chain))") }
        for name in state.sets.keys where !Names.isValidSetName(name) { throw refuse("invalid set name \(DisplayText.quoted(name))") }
        for (chain, policy) in state.policies where !["ACCEPT", "DROP"].contains(policy) || !chain.key.table.builtinChains.contains(chain.chain) {
            throw refuse("policy of \(DisplayText.quoted(chain.chain))")
        }
        for rule in state.rules {
            guard !rule.text.isEmpty, Names.isPrintable(rule.text) else { throw refuse("rule \(DisplayText.quoted(rule.text))") }
            guard rule.key.table.builtinChains.contains(rule.chain) || ChainNames.isValidUserChain(rule.chain) else {
                throw refuse("invalid chain name \(DisplayText.quoted(rule.chain))")
            }
        }
    }

    public func save(_ state: DesiredState) throws {
        try checkSavable(state)
        let bytes = Self.encode(state)
        do {
            try StateDirectory.prepare(directory)
            try AtomicFile.write(path, contents: bytes, mode: 0o600)
            // The journal's rules are in the file now (and it names the file replaced anyway).
            _ = unlink(journalPath)
        } catch let error as StateDirectory.Error {
            throw EngineError(.io, "cannot write \(path): \(error)", cause: error)
        } catch let error as AtomicFile.Error {
            throw EngineError(.io, "cannot write \(path): \(error)", cause: error)
        }
    }

    static func encode(_ state: DesiredState) -> [UInt8] {
        func chain(_ ref: DesiredState.ChainRef, policy: String? = nil) -> JSON {
            var members: [(String, JSON)] = [("chain", .string(ref.chain)), ("family", .string(ref.key.family.rawValue))]
            if let policy { members.append(("policy", .string(policy))) }
            members.append(("table", .string(ref.key.table.rawValue)))
            return .object(members)
        }
        var file: [(String, JSON)] = []
        if let backend = state.backend { file.append(("backend", .string(backend.rawValue))) }
        if let mark = state.kernelMark {
            file.append(("kernel", .object([("generation", .number(Int(mark.generation))), ("namespace", .number(Int(truncatingIfNeeded: mark.namespace)))])))
        }
        file += [
            ("chains", .array(state.userChains.sorted().map { chain($0) })),
            ("nextId", .number(state.nextID)),
            ("policies", .array(state.policies.keys.sorted().map { chain($0, policy: state.policies[$0]) })),
            ("rules", .array(state.rules.map { rule in
                .object([("chain", .string(rule.chain)), ("family", .string(rule.family.rawValue)), ("id", .string(rule.id)),
                         ("rule", .string(rule.text)), ("table", .string(rule.table.rawValue))])
            })),
            ("sets", .array(state.sets.keys.sorted().map { name in
                let spec = state.sets[name]!
                return .object([("entries", .array(spec.entries.map { .string($0.description) })), ("family", .string(spec.family.rawValue)),
                                ("name", .string(name)), ("type", .string(spec.type.rawValue))])
            })),
            ("tables", .array(state.touched.sorted().map { .string($0.description) })),
            ("version", .number(1)),
        ]
        return JSON.object(file).rendered(capacity: 4096 + 256 * state.rules.count)
    }

    /// Where an item is in the file (`rules[3]`), formatted only for a message.
    struct Path: CustomStringConvertible {
        var list: String, index: Int
        var description: String { "\(list)[\(index)]" }
    }

    /// The highest rule number a file may use (ids are handed out counting up from it; far from
    /// overflowing, and exact in any JSON reader's numbers).
    static let maxID = 1 << 53

    /// Whether a text holds a control character (C0 or DEL), which no stored text may.
    static func hasControlCharacters(_ text: String) -> Bool { ByteScan.hasControlCharacter(text) }

    /// `rN` as docknfv writes it: N > 0, no sign, no leading zero (two such ids differ exactly
    /// when their numbers do).
    static func isCanonicalID(_ id: String) -> Bool {
        let bytes = id.utf8
        guard bytes.count >= 2, bytes.first == UInt8(ascii: "r"), bytes.dropFirst().first != UInt8(ascii: "0") else { return false }
        return bytes.dropFirst().allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// Rule ids: what docknfv hands out (`r12`) or a name of letters, digits, `-`, `_` and `.`
    /// (at most 64), so `rule list`'s tab-separated lines and `rule del --id` can carry them.
    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 < 0x80 && (isalnum(Int32($0)) != 0 || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")) }
    }

    /// Reads a state file. Structure, names and ids are checked here; rule texts are parsed when
    /// used (and then a bad one is reported as a corrupt state).
    ///
    /// The rules — nearly all of a large file — are read straight from the bytes, without a JSON
    /// tree; the rest of the file goes through `decode(file:)`. Anything the direct reading does
    /// not expect (a value of another type, a repeated key, bad JSON) reads the whole file as a
    /// tree instead, so every message is the one that reading gives.
    static func decode(_ bytes: [UInt8], path: String) throws -> DesiredState {
        guard let (rest, rules) = try? scanRules(bytes) else { return try decode(file: parseTree(bytes, path: path), path: path, rules: nil) }
        return try decode(file: rest, path: path, rules: rules)
    }

    /// One rule as the file holds it, not yet checked.
    struct RawRule { var id: String, family: String, table: String, chain: String, text: String }

    /// The top-level members other than `rules`, and the rules' fields. Throws when the file is
    /// not as docknfv writes it (the caller then reads it as a tree).
    static func scanRules(_ bytes: [UInt8]) throws -> (JSON, [RawRule]) {
        struct Unexpected: Error {}
        var scanner = JSON.Scanner(bytes)
        guard scanner.enterObject() else { throw Unexpected() }
        var members: [(String, JSON)] = []
        var rules: [RawRule]?
        let fields: [[UInt8]] = ["chain", "family", "id", "rule", "table"].map { Array($0.utf8) }
        while let key = try scanner.nextKey() {
            guard !members.contains(where: { $0.0 == key }) else { throw Unexpected() }
            guard key == "rules" else { members.append((key, try scanner.value())); continue }
            guard scanner.enterArray() else { throw Unexpected() }
            var list: [RawRule] = []
            while try scanner.nextItem() {
                guard scanner.enterObject() else { throw Unexpected() }
                var values: [String?] = [nil, nil, nil, nil, nil]
                while let index = try scanner.nextKey(in: fields) {
                    guard index < fields.count else { try scanner.skipValue(); continue }
                    guard values[index] == nil, let text = try scanner.string() else { throw Unexpected() }
                    values[index] = text
                }
                guard let chain = values[0], let family = values[1], let id = values[2], let text = values[3], let table = values[4] else { throw Unexpected() }
                list.append(RawRule(id: id, family: family, table: table, chain: chain, text: text))
            }
            rules = list
            members.append((key, .array([])))
        }
        try scanner.end()
        guard let rules else { throw Unexpected() }
        return (.object(members), rules)
    }

    static func parseTree(_ bytes: [UInt8], path: String) throws -> JSON {
        do { return try JSON.parse(bytes) } catch {
            throw EngineError(.invalidState, "state file \(path) is corrupt: not a docknfv state file: not valid JSON (\(error)). It was left as it is; fix or move it away, then run again")
        }
    }

    /// The state from a file's tree; `rules`, when given, are the file's rules read directly
    /// (and its tree's `rules` is empty).
    static func decode(file: JSON, path: String, rules scanned: [RawRule]?) throws -> DesiredState {
        func corrupt(_ detail: String) -> EngineError {
            EngineError(.invalidState, "state file \(path) is corrupt: \(detail). It was left as it is; fix or move it away, then run again")
        }
        // What is wrong with the structure is said in the file's terms: `rules[0].id is not a string`.
        func structure(_ detail: String) -> EngineError { corrupt("not a docknfv state file: \(detail)") }
        // Paths are formatted only for a message (a file of thousands of rules is read on every run).
        func at(_ path: @autoclosure () -> String, _ key: String) -> String { let path = path(); return path.isEmpty ? key : "\(path).\(key)" }
        func typed<T>(_ item: JSON, _ key: String, _ path: @autoclosure () -> String, _ kind: String, _ cast: (JSON) -> T?) throws -> T {
            guard let found = item[key] else { throw structure("\(at(path(), key)) is missing") }
            if let result = cast(found) { return result }
            if found == .null { throw structure("\(at(path(), key)) is null, not \(kind)") }
            throw structure("\(at(path(), key)) is not \(kind)")
        }
        func text(_ item: JSON, _ key: String, _ path: @autoclosure () -> String) throws -> String { try typed(item, key, path(), "a string", \.string) }
        func list(_ key: String, optional: Bool = false) throws -> [JSON] {
            if optional && file[key] == nil { return [] }
            return try typed(file, key, "", "a list", \.array)
        }
        func objects(_ key: String, optional: Bool = false) throws -> [(JSON, Path)] {
            try list(key, optional: optional).enumerated().map { index, item in
                guard item.members != nil else { throw structure("\(key)[\(index)] is not an object") }
                return (item, Path(list: key, index: index))
            }
        }
        guard let members = file.members else { throw structure("the top level is not an object") }
        let known: Set<String> = ["backend", "kernel", "chains", "nextId", "policies", "rules", "sets", "tables", "version"]
        if let unknown = members.first(where: { !known.contains($0.0) }) { throw corrupt("unknown field \(DisplayText.quoted(unknown.0))") }
        let version = try typed(file, "version", "", "a whole number", \.int)
        guard version == 1 else { throw corrupt("unknown version \(version)") }
        func key(_ item: JSON, _ path: Path, _ what: @autoclosure () -> String) throws -> TableKey {
            let family = try text(item, "family", path.description), table = try text(item, "table", path.description)
            if let family = IPFamily(rawValue: family), let table = NetfilterTable(rawValue: table) { return TableKey(family, table) }
            throw corrupt("\(what()): unknown family/table \(DisplayText.clipped(family))/\(DisplayText.clipped(table))")
        }
        func chainName(_ name: String, _ key: TableKey) throws -> String {
            guard key.table.builtinChains.contains(name) || ChainNames.isValidUserChain(name) else { throw corrupt("invalid chain name \(DisplayText.quoted(name))") }
            return name
        }
        var state = DesiredState()
        if let backend = file["backend"] {
            guard let name = backend.string, let kind = BackendKind(rawValue: name) else { throw corrupt("unknown backend \(DisplayText.clipped(backend.string ?? "(not a string)"))") }
            state.backend = kind
        }
        if let mark = file["kernel"] {
            // Only a hint (a mismatch means "read the kernel"); a malformed one is dropped, not fatal.
            if let generation = mark["generation"]?.int, let namespace = mark["namespace"]?.int, let value = UInt32(exactly: generation) {
                state.kernelMark = KernelMark(namespace: UInt64(truncatingIfNeeded: namespace), generation: value)
            }
        }
        let nextID = try typed(file, "nextId", "", "a whole number", \.int)
        guard nextID >= 1 else { throw corrupt("nextId \(nextID) is not a positive number") }
        guard nextID <= maxID + 1 else { throw corrupt("nextId \(nextID) is out of range (at most \(maxID + 1))") }
        for item in try list("tables") {
            guard let name = item.string, let key = TableKey(name) else { throw corrupt("unknown table \(DisplayText.clipped(item.string ?? "(not a string)"))") }
            state.touched.insert(key)
        }
        for (item, path) in try objects("chains") {
            let key = try key(item, path, "chain")
            state.userChains.insert(.init(key, try chainName(try text(item, "chain", path.description), key)))
        }
        for (item, path) in try objects("policies") {
            let key = try key(item, path, "policy"), chain = try text(item, "chain", path.description)
            guard let policy = item["policy"]?.string, ["ACCEPT", "DROP"].contains(policy), key.table.builtinChains.contains(chain) else {
                throw corrupt("policy of \(DisplayText.quoted(chain))")
            }
            state.policies[.init(key, chain)] = policy
        }
        for (item, path) in try objects("sets", optional: true) {
            let name = try text(item, "name", path.description)
            guard Names.isValidSetName(name) else { throw corrupt("invalid set name \(DisplayText.quoted(name))") }
            guard let type = SetType(rawValue: try text(item, "type", path.description)), let family = IPFamily(rawValue: try text(item, "family", path.description)) else {
                throw corrupt("set \(name): unknown type or family")
            }
            guard state.sets[name] == nil else { throw corrupt("set \(name) appears twice") }
            var entries: [SetEntry] = []
            for element in item["entries"]?.array ?? [] {
                guard let value = element.string, let entry = SetEntry(value, type: type), entry.family == family else {
                    throw corrupt("set \(name): bad element \(DisplayText.clipped(element.string ?? "(not a string)"))")
                }
                entries.append(entry)
            }
            state.sets[name] = SetSpec(type: type, family: family, entries: entries)
        }
        var otherIDs = Set<String>(), hashed = false
        var highest = 0
        // The last (family, table, chain) checked: consecutive rules mostly share it.
        var lastPlace: (family: String, table: String, chain: String, key: TableKey)?
        func add(_ id: String, family: () throws -> String, table: () throws -> String, chain: () throws -> String, text: () throws -> String,
                 place: () throws -> TableKey) throws {
            guard Self.isValidID(id) else { throw corrupt("invalid rule id \(DisplayText.quoted(id))") }
            let key: TableKey, chainText: String
            let familyText = try family(), tableText = try table()
            if let last = lastPlace, last.family == familyText, last.table == tableText {
                key = last.key
            } else {
                key = try place()
            }
            // Ids docknfv hands out (`rN`, N counting up) are unique when each is above the last;
            // only the others are hashed.
            let number = id.utf8.first == UInt8(ascii: "r") ? Int(id.dropFirst()) : nil
            if let number, number > highest, Self.isCanonicalID(id) {
                guard number <= Self.maxID else { throw corrupt("rule id \(id) is out of range (at most r\(Self.maxID))") }
                highest = number
                if hashed { otherIDs.insert(id) }
            } else {
                if !hashed { otherIDs = Set(state.rules.map(\.id)); hashed = true }
                guard otherIDs.insert(id).inserted else { throw corrupt("duplicate rule id \(DisplayText.clipped(id))") }
                if let number {
                    guard number <= Self.maxID else { throw corrupt("rule id \(id) is out of range (at most r\(Self.maxID))") }
                    highest = max(highest, number)
                }
            }
            let rule = try text()
            guard !rule.isEmpty, !Self.hasControlCharacters(rule) else { throw corrupt("rule \(DisplayText.quoted(id)): empty or with control characters") }
            let name = try chain()
            if let last = lastPlace, last.key == key, last.chain == name { chainText = last.chain } else { chainText = try chainName(name, key) }
            lastPlace = (familyText, tableText, chainText, key)
            state.rules.append(StoredRule(id: id, table: key.table, chain: chainText, entry: RuleEntry(text: rule, family: key.family, trusted: true)))
        }
        if let scanned {
            state.rules.reserveCapacity(scanned.count)
            for (index, raw) in scanned.enumerated() {
                try add(raw.id, family: { raw.family }, table: { raw.table }, chain: { raw.chain }, text: { raw.text }, place: {
                    try key(.object([("family", .string(raw.family)), ("table", .string(raw.table))]), Path(list: "rules", index: index), "rule \(raw.id)")
                })
            }
        } else {
            for (item, path) in try objects("rules") {
                let id = try text(item, "id", path.description)
                try add(id, family: { try text(item, "family", path.description) },
                        table: { try text(item, "table", path.description) }, chain: { try text(item, "chain", path.description) },
                        text: { try text(item, "rule", path.description) }, place: { try key(item, path, "rule \(id)") })
            }
        }
        // An id is never handed out twice, whatever nextId says.
        state.nextID = max(nextID, highest + 1)
        return state
    }
}
