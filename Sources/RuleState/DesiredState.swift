import Foundation
import IPSet
import IPTables
import Rules
import StateFiles

/// (family, table): the unit libiptc commits atomically.
public struct TableKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var family: IPFamily
    public var table: NetfilterTable
    public init(_ family: IPFamily, _ table: NetfilterTable) { self.family = family; self.table = table }
    public var description: String { "\(family)/\(table.rawValue)" }
    public static func < (a: TableKey, b: TableKey) -> Bool {
        (a.family == .v4 ? 0 : 1, a.table) < (b.family == .v4 ? 0 : 1, b.table)
    }
    init?(_ text: String) {
        let parts = text.split(separator: "/").map(String.init)
        guard parts.count == 2, let family = IPFamily(rawValue: parts[0]), let table = NetfilterTable(rawValue: parts[1]) else { return nil }
        self.init(family, table)
    }
}

/// A rule docknfv keeps, with its stable id.
public struct StoredRule: Sendable, Equatable {
    public var id: String
    public var table: NetfilterTable
    public var chain: String
    public var rule: Rule
    public init(id: String, table: NetfilterTable, chain: String, rule: Rule) {
        self.id = id
        self.table = table
        self.chain = chain
        self.rule = rule
    }
    public var key: TableKey { TableKey(rule.family, table) }
    public var text: String { RuleRenderer.render(rule) }
}

/// Everything docknfv was asked to hold: rules, user chains and policies, per family and table.
/// This — not the kernel — is the source of truth; `apply` makes the kernel match it.
public struct DesiredState: Sendable, Equatable {
    public var rules: [StoredRule] = []
    public var userChains: Set<ChainRef> = []
    public var policies: [ChainRef: String] = [:]
    /// Tables docknfv has written to (so it can clean up tables that became empty).
    public var touched: Set<TableKey> = []
    /// ipsets docknfv owns, by name, with their full content.
    public var sets: [String: SetSpec] = [:]
    public var nextID = 1

    public struct SetSpec: Sendable, Equatable {
        public var type: SetType
        public var family: IPFamily
        public var entries: [SetEntry]
        public init(type: SetType, family: IPFamily, entries: [SetEntry] = []) {
            self.type = type
            self.family = family
            self.entries = entries
        }
    }

    public struct ChainRef: Hashable, Sendable, Comparable {
        public var key: TableKey
        public var chain: String
        public init(_ key: TableKey, _ chain: String) { self.key = key; self.chain = chain }
        public static func < (a: ChainRef, b: ChainRef) -> Bool { (a.key, a.chain) < (b.key, b.chain) }
    }

    public init() {}

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
        return keys.sorted().map { key in
            var table = TableRules(family: key.family, table: key.table)
            for stored in rules where stored.key == key { table.chains[stored.chain, default: []].append(stored.rule) }
            table.userChains = Set(userChains.filter { $0.key == key }.map(\.chain))
            table.policies = Dictionary(uniqueKeysWithValues: policies.filter { $0.key.key == key }.map { ($0.key.chain, $0.value) })
            return table
        }
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

// MARK: - Persistence

public enum StateError: Error, Equatable, CustomStringConvertible {
    case corrupt(path: String, detail: String)
    case io(String)
    case lockTimeout(path: String)

    public var description: String {
        switch self {
        case .corrupt(let path, let detail):
            return "state file \(path) is corrupt: \(detail). It was left as it is; fix or move it away, then run again"
        case .io(let detail): return detail
        case .lockTimeout(let path): return "another docknfvctl held \(path) for too long"
        }
    }
}

/// The state file (`rules.json` in the state directory), written atomically, and a lock file that
/// serialises docknfv processes doing read–modify–write on it.
public struct StateStore {
    public let directory: String
    public var path: String { directory + "/rules.json" }
    var lockPath: String { directory + "/rules.lock" }

    public init(directory: String) { self.directory = directory }

    /// Runs `body` holding the state lock (bounded wait).
    public func locked<T>(timeout: Double = 30, _ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fd = open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateError.io("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let start = ContinuousClock.now
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if ContinuousClock.now - start > .milliseconds(Int64(timeout * 1000)) { throw StateError.lockTimeout(path: lockPath) }
            usleep(2_000)
        }
        return try body()
    }

    public func load() throws -> DesiredState {
        let bytes: [UInt8]?
        do { bytes = try AtomicFile.read(path) } catch { throw StateError.io(String(describing: error)) }
        guard let bytes else { return DesiredState() }
        return try Self.decode(Data(bytes), path: path)
    }

    public func save(_ state: DesiredState) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try AtomicFile.write(path, contents: Array(Self.encode(state)), mode: 0o600)
        } catch { throw StateError.io("cannot write \(path): \(error)") }
    }

    struct FileFormat: Codable {
        struct RuleEntry: Codable { var id: String; var family: String; var table: String; var chain: String; var rule: String }
        struct ChainEntry: Codable { var family: String; var table: String; var chain: String; var policy: String? }
        struct SetEntryFile: Codable { var name: String; var type: String; var family: String; var entries: [String] }
        var version: Int
        var nextId: Int
        var sets: [SetEntryFile]?
        var tables: [String]
        var chains: [ChainEntry]
        var policies: [ChainEntry]
        var rules: [RuleEntry]
    }

    static func encode(_ state: DesiredState) -> Data {
        let file = FileFormat(
            version: 1, nextId: state.nextID,
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
        return (try? encoder.encode(file)) ?? Data()
    }

    static func decode(_ data: Data, path: String) throws -> DesiredState {
        let file: FileFormat
        do { file = try JSONDecoder().decode(FileFormat.self, from: data) } catch {
            throw StateError.corrupt(path: path, detail: "not a docknfv state file (\(error))")
        }
        guard file.version == 1 else { throw StateError.corrupt(path: path, detail: "unknown version \(file.version)") }
        func key(_ family: String, _ table: String, _ what: String) throws -> TableKey {
            guard let key = TableKey("\(family)/\(table)") else { throw StateError.corrupt(path: path, detail: "\(what): unknown family/table \(family)/\(table)") }
            return key
        }
        var state = DesiredState()
        state.nextID = file.nextId
        for text in file.tables {
            guard let key = TableKey(text) else { throw StateError.corrupt(path: path, detail: "unknown table \(text)") }
            state.touched.insert(key)
        }
        for chain in file.chains { state.userChains.insert(.init(try key(chain.family, chain.table, "chain \(chain.chain)"), chain.chain)) }
        for entry in file.policies {
            guard let policy = entry.policy, ["ACCEPT", "DROP"].contains(policy) else { throw StateError.corrupt(path: path, detail: "policy of \(entry.chain)") }
            state.policies[.init(try key(entry.family, entry.table, "policy \(entry.chain)"), entry.chain)] = policy
        }
        for set in file.sets ?? [] {
            guard let type = SetType(rawValue: set.type), let family = IPFamily(rawValue: set.family) else {
                throw StateError.corrupt(path: path, detail: "set \(set.name): unknown type or family")
            }
            var entries: [SetEntry] = []
            for text in set.entries {
                guard let entry = SetEntry(text, type: type), entry.family == family else {
                    throw StateError.corrupt(path: path, detail: "set \(set.name): bad element \(text)")
                }
                entries.append(entry)
            }
            state.sets[set.name] = DesiredState.SetSpec(type: type, family: family, entries: entries)
        }
        var ids = Set<String>()
        for entry in file.rules {
            let key = try key(entry.family, entry.table, "rule \(entry.id)")
            guard ids.insert(entry.id).inserted else { throw StateError.corrupt(path: path, detail: "duplicate rule id \(entry.id)") }
            let parsed: [Rule]
            do { parsed = try RuleParser(family: key.family).parse(entry.rule) } catch {
                throw StateError.corrupt(path: path, detail: "rule \(entry.id): \(error)")
            }
            guard parsed.count == 1 else { throw StateError.corrupt(path: path, detail: "rule \(entry.id) is not a single rule") }
            state.rules.append(StoredRule(id: entry.id, table: key.table, chain: entry.chain, rule: parsed[0]))
        }
        return state
    }
}
