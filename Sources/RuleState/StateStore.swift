import Foundation
import RuleEngine
import StateFiles

/// The state file (`rules.json` in the state directory), written atomically, and a lock file that
/// serialises docknfv processes doing read–modify–write on it. The directory is checked before
/// use: only root (or the current user) may be able to write to it.
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
        do {
            let lock = try LockFile.acquire(lockPath, timeout: timeout, kind: .shared)
            defer { lock.release() }
            return try body()
        } catch let error as LockFile.Error {
            if case .readOnly = error { return try body() }
            throw EngineError(error.isTimeout ? .busy : .io, error.description, cause: error)
        }
    }

    public func load() throws -> DesiredState {
        do { try StateDirectory.checkReadable(directory) } catch { throw EngineError(.io, error.description, cause: error) }
        let bytes: [UInt8]?
        do { bytes = try AtomicFile.read(path) } catch { throw EngineError(.io, "cannot read \(path): \(error)", cause: error) }
        guard let bytes else { return DesiredState() }
        return try Self.decode(Data(bytes), path: path)
    }

    public func save(_ state: DesiredState) throws {
        let data = try Self.encode(state)
        // Never write what cannot be read back: a bad name would lock every later command out.
        _ = try Self.decode(data, path: path)
        do {
            try StateDirectory.prepare(directory)
            try AtomicFile.write(path, contents: Array(data), mode: 0o600)
        } catch { throw EngineError(.io, "cannot write \(path): \(error)", cause: error as? AtomicFile.Error) }
    }

    struct FileFormat: Codable {
        struct RuleEntry: Codable { var id: String; var family: String; var table: String; var chain: String; var rule: String }
        struct ChainEntry: Codable { var family: String; var table: String; var chain: String; var policy: String? }
        struct SetEntryFile: Codable { var name: String; var type: String; var family: String; var entries: [String] }
        var version: Int
        var backend: String?
        var nextId: Int
        var sets: [SetEntryFile]?
        var tables: [String]
        var chains: [ChainEntry]
        var policies: [ChainEntry]
        var rules: [RuleEntry]
    }

    static func encode(_ state: DesiredState) throws -> Data {
        let file = FileFormat(
            version: 1, backend: state.backend?.rawValue, nextId: state.nextID,
            sets: state.sets.keys.sorted().map { name in
                let spec = state.sets[name]!
                return .init(name: name, type: spec.type.rawValue, family: spec.family.rawValue, entries: spec.entries.map(\.description))
            },
            tables: state.touched.sorted().map(\.description),
            chains: state.userChains.sorted().map { .init(family: $0.key.family.rawValue, table: $0.key.table.rawValue, chain: $0.chain) },
            policies: state.policies.keys.sorted().map { .init(family: $0.key.family.rawValue, table: $0.key.table.rawValue, chain: $0.chain, policy: state.policies[$0]) },
            rules: state.rules.map { .init(id: $0.id, family: $0.rule.family.rawValue, table: $0.table.rawValue, chain: $0.chain, rule: $0.text) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { return try encoder.encode(file) } catch { throw EngineError(.invalidInput, "the state cannot be encoded: \(error)") }
    }

    /// What is wrong with the file, in the file's terms: `rules[2].id is not a string`, not
    /// `expected value of type Dictionary<String, Any>` and a coding path dump.
    static func describe(_ error: DecodingError) -> String {
        func at(_ path: [any CodingKey]) -> String {
            guard !path.isEmpty else { return "the top level" }
            return path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
        }
        func kind(_ type: Any.Type) -> String {
            if type is String.Type { return "a string" }
            if type is Int.Type { return "a whole number" }
            let name = "\(type)"
            return name.hasPrefix("Dictionary") ? "an object" : name.hasPrefix("Array") ? "a list" : name
        }
        switch error {
        case .typeMismatch(let type, let context): return "\(at(context.codingPath)) is not \(kind(type))"
        case .valueNotFound(let type, let context): return "\(at(context.codingPath)) is null, not \(kind(type))"
        case .keyNotFound(let key, let context): return "\(at(context.codingPath + [key])) is missing"
        case .dataCorrupted(let context):
            // Foundation reports a fraction or an out-of-range number in an integer field the same way.
            return context.codingPath.isEmpty ? "not valid JSON (or a number where a whole number belongs)" : "\(at(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// The highest rule number a file may use (ids are handed out counting up from it; far from
    /// overflowing, and exact in any JSON reader's numbers).
    static let maxID = 1 << 53

    /// Rule ids: what docknfv hands out (`r12`) or a name of letters, digits, `-`, `_` and `.`
    /// (at most 64), so `rule list`'s tab-separated lines and `rule del --id` can carry them.
    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 < 0x80 && (isalnum(Int32($0)) != 0 || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")) }
    }

    static func decode(_ data: Data, path: String) throws -> DesiredState {
        func corrupt(_ detail: String) -> EngineError {
            EngineError(.invalidState, "state file \(path) is corrupt: \(detail). It was left as it is; fix or move it away, then run again")
        }
        let file: FileFormat
        do { file = try JSONDecoder().decode(FileFormat.self, from: data) } catch let error as DecodingError {
            throw corrupt("not a docknfv state file: \(describe(error))")
        } catch {
            throw corrupt("not a docknfv state file: \(error.localizedDescription)")
        }
        guard file.version == 1 else { throw corrupt("unknown version \(file.version)") }
        func key(_ family: String, _ table: String, _ what: String) throws -> TableKey {
            guard let key = TableKey("\(family)/\(table)") else { throw corrupt("\(what): unknown family/table \(family)/\(table)") }
            return key
        }
        func chainName(_ name: String, _ key: TableKey) throws -> String {
            guard key.table.builtinChains.contains(name) || ChainNames.isValidUserChain(name) else { throw corrupt("invalid chain name \(DisplayText.quoted(name))") }
            return name
        }
        var state = DesiredState()
        if let backend = file.backend {
            guard let kind = BackendKind(rawValue: backend) else { throw corrupt("unknown backend \(backend)") }
            state.backend = kind
        }
        for text in file.tables {
            guard let key = TableKey(text) else { throw corrupt("unknown table \(text)") }
            state.touched.insert(key)
        }
        for chain in file.chains {
            let key = try key(chain.family, chain.table, "chain \(chain.chain)")
            state.userChains.insert(.init(key, try chainName(chain.chain, key)))
        }
        for entry in file.policies {
            let key = try key(entry.family, entry.table, "policy \(entry.chain)")
            guard let policy = entry.policy, ["ACCEPT", "DROP"].contains(policy), key.table.builtinChains.contains(entry.chain) else {
                throw corrupt("policy of \(DisplayText.quoted(entry.chain))")
            }
            state.policies[.init(key, entry.chain)] = policy
        }
        for set in file.sets ?? [] {
            guard Names.isValidSetName(set.name) else { throw corrupt("invalid set name \(DisplayText.quoted(set.name))") }
            guard let type = SetType(rawValue: set.type), let family = IPFamily(rawValue: set.family) else {
                throw corrupt("set \(set.name): unknown type or family")
            }
            var entries: [SetEntry] = []
            for text in set.entries {
                guard let entry = SetEntry(text, type: type), entry.family == family else { throw corrupt("set \(set.name): bad element \(text)") }
                entries.append(entry)
            }
            state.sets[set.name] = SetSpec(type: type, family: family, entries: entries)
        }
        var ids = Set<String>()
        var highest = 0
        var parsers: [IPFamily: RuleParser] = [:]
        guard file.nextId <= maxID + 1 else { throw corrupt("nextId \(file.nextId) is out of range (at most \(maxID + 1))") }
        for entry in file.rules {
            guard Self.isValidID(entry.id) else { throw corrupt("invalid rule id \(DisplayText.quoted(entry.id))") }
            let key = try key(entry.family, entry.table, "rule \(entry.id)")
            guard ids.insert(entry.id).inserted else { throw corrupt("duplicate rule id \(entry.id)") }
            if entry.id.hasPrefix("r"), let number = Int(entry.id.dropFirst()) {
                guard number <= maxID else { throw corrupt("rule id \(entry.id) is out of range (at most r\(maxID))") }
                highest = max(highest, number)
            }
            // The texts are what `save` prints and `import` reads back: iptables-restore syntax
            // (only double quotes group), so the file, `save` and `import` agree on every rule.
            var parser = parsers[key.family] ?? RuleParser(family: key.family)
            parser.restoreSyntax = true
            parsers[key.family] = parser
            let parsed: [Rule]
            do { parsed = try parser.parse(entry.rule) } catch { throw corrupt("rule \(entry.id): \(error)") }
            guard parsed.count == 1 else { throw corrupt("rule \(entry.id) is not a single rule") }
            state.rules.append(StoredRule(id: entry.id, table: key.table, chain: try chainName(entry.chain, key), rule: parsed[0], text: entry.rule))
        }
        // An id is never handed out twice, whatever nextId says.
        state.nextID = max(file.nextId, highest + 1)
        return state
    }
}
