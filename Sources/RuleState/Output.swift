import RuleEngine

/// What docknfvctl prints with --json: plain Codable values, the same for every front end.
public enum Output {
    public struct RuleInfo: Codable, Sendable, Equatable {
        public var id: String, family: String, table: String, chain: String, rule: String
        public init(_ stored: StoredRule) {
            id = stored.id; family = stored.family.rawValue; table = stored.table.rawValue; chain = stored.chain; rule = stored.text
        }
    }

    public struct Report: Codable, Sendable, Equatable {
        public var committed: [String], unchanged: [String], sets: [String], dryRun: Bool
        public var backend: String?
        public var rules: [RuleInfo]?
        public var imported: Int?
        public init(_ report: ApplyReport, dryRun: Bool, backend: BackendKind? = nil) {
            committed = report.committed.map(\.description); unchanged = report.unchanged.map(\.description)
            sets = report.sets; self.dryRun = dryRun; self.backend = backend?.rawValue
        }
    }

    public struct RuleList: Codable, Sendable, Equatable {
        public var rules: [RuleInfo]
        public init(rules: [RuleInfo]) { self.rules = rules }
    }

    public struct ChainInfo: Codable, Sendable, Equatable {
        public var family: String, table: String, chain: String
        public var policy: String?
    }

    public struct SaveInfo: Codable, Sendable, Equatable {
        public var rules: [RuleInfo], policies: [ChainInfo], chains: [ChainInfo]
        public init(_ state: DesiredState) {
            rules = state.rules.map(RuleInfo.init)
            policies = state.policies.sorted { $0.key < $1.key }.map {
                ChainInfo(family: $0.key.key.family.rawValue, table: $0.key.key.table.rawValue, chain: $0.key.chain, policy: $0.value)
            }
            chains = state.userChains.sorted().map { ChainInfo(family: $0.key.family.rawValue, table: $0.key.table.rawValue, chain: $0.chain) }
        }
    }

    public struct SetInfo: Codable, Sendable, Equatable {
        public var name: String, type: String, family: String, entries: [String]
        public init(name: String, type: String, family: String, entries: [String]) {
            self.name = name; self.type = type; self.family = family; self.entries = entries
        }
    }
    public struct SetList: Codable, Sendable, Equatable {
        public var sets: [SetInfo]
        public init(sets: [SetInfo]) { self.sets = sets }
    }

    public struct TableDriftInfo: Codable, Sendable, Equatable { public var missing: [String], unexpected: [String] }
    public struct Diff: Codable, Sendable, Equatable {
        public var inSync: Bool
        public var tables: [String: TableDriftInfo]
        public init(_ drift: [(TableKey, TableDrift)]) {
            inSync = drift.allSatisfy { $0.1.isEmpty }
            tables = Dictionary(drift.map { ($0.0.description, TableDriftInfo(missing: $0.1.missing, unexpected: $0.1.unexpected)) }) { a, b in
                TableDriftInfo(missing: a.missing + b.missing, unexpected: a.unexpected + b.unexpected)
            }
        }
    }

    public struct Status: Codable, Sendable, Equatable {
        public var stateFile: String, rules: Int, backend: String, backendReason: String, inSync: Bool
        public var nftablesTables: [String]
        public var legacyRules: Bool
        public init(stateFile: String, rules: Int, backend: String, backendReason: String, inSync: Bool, nftablesTables: [String], legacyRules: Bool) {
            self.stateFile = stateFile; self.rules = rules; self.backend = backend; self.backendReason = backendReason
            self.inSync = inSync; self.nftablesTables = nftablesTables; self.legacyRules = legacyRules
        }
    }

    public struct Migration: Codable, Sendable, Equatable {
        public var from: String, to: String, committed: [String], sets: [String]
        public init(from: String, to: String, committed: [String], sets: [String]) { self.from = from; self.to = to; self.committed = committed; self.sets = sets }
    }
}
