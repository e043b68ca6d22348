/// The engine's one error type: a code front ends map (CLI exit status, CNI error code) and a
/// message that names the object, with the underlying error kept as the cause.
public struct EngineError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, Codable {
        /// A rule, name or value that cannot be applied; nothing was changed.
        case invalidInput
        /// The saved state cannot be read (corrupt, unknown version); it was left as it is.
        case invalidState
        /// Another program holds the lock or changed the rules meanwhile; try again later.
        case busy
        /// Something docknfv does not own stands in the way (a foreign rule jumps to our chain).
        case conflict
        /// The kernel refused the change; nothing was changed.
        case kernel
        /// The backend cannot express the request (e.g. a match nftables has no equivalent for).
        case unsupported
        /// Files: the state directory or a file could not be read or written.
        case io
        /// Not allowed (not root, no CAP_NET_ADMIN).
        case permission
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// CNI spec error code: 11 "try again later" for busy, 7 invalid network configuration for bad
    /// input, 100 (the first code the spec leaves to plugins) otherwise.
    public var cniCode: Int {
        switch code {
        case .busy: return 11
        case .invalidInput, .unsupported: return 7
        default: return 100
        }
    }
}

/// Which kernel interface holds the rules.
public enum BackendKind: String, Sendable, CaseIterable, Codable {
    /// Legacy x_tables through libiptc (what `iptables-legacy-save` shows), sets as ipsets.
    case iptables
    /// nf_tables through libnftnl (what `nft list ruleset` and `iptables-nft` show).
    case nftables
}

/// One thing that differs between the desired rules and the kernel.
public enum DriftItem: Sendable, Equatable, CustomStringConvertible {
    /// docknfv's own table (nftables) is missing, or holds rules docknfv no longer wants.
    case missingTable(String)
    case unexpectedTable(String)
    case missingChain(String)
    case unexpectedChain(String)
    /// A desired rule the kernel does not hold at that position (1-based) of the chain.
    case missingRule(chain: String, position: Int, rule: String)
    case unexpectedRules(chain: String, count: Int)
    case missingJump(from: String)
    case unexpectedJump(from: String)
    case policy(chain: String, wanted: String)
    case missingSet(String)
    case unexpectedSet(String)
    case setContent(name: String, missing: Int, unexpected: Int)

    public var isMissing: Bool {
        switch self {
        case .missingTable, .missingChain, .missingRule, .missingJump, .policy, .missingSet: return true
        case .setContent(_, let missing, _): return missing > 0
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .missingTable(let table): return "table \(table)"
        case .unexpectedTable(let table): return "table \(table) (docknfv wants nothing there)"
        case .missingChain(let chain): return "chain \(chain)"
        case .unexpectedChain(let chain): return "chain \(chain)"
        case .missingRule(let chain, let position, let rule): return "-A \(chain) \(rule) (position \(position))"
        case .unexpectedRules(let chain, let count): return "\(count) extra rule(s) in \(chain)"
        case .missingJump(let chain): return "jump from \(chain) to docknfv's chain (docknfvctl's as its first rule)"
        case .unexpectedJump(let chain): return "jump from \(chain) to a docknfv chain"
        case .policy(let chain, let wanted): return "policy \(chain) \(wanted)"
        case .missingSet(let name): return "set \(name)"
        case .unexpectedSet(let name): return "set \(name)"
        case .setContent(let name, let missing, let unexpected): return "set \(name): \(missing) element(s) missing, \(unexpected) unexpected"
        }
    }
}

/// What the kernel holds that differs from the desired state, in one (family, table) — or, for
/// sets, under the pseudo-key the backend reports them at.
public struct TableDrift: Sendable, Equatable {
    public var items: [DriftItem] = []
    public init(items: [DriftItem] = []) { self.items = items }
    public var isEmpty: Bool { items.isEmpty }
    public var missing: [String] { items.filter(\.isMissing).map(\.description) }
    public var unexpected: [String] { items.filter { !$0.isMissing }.map(\.description) }
}

/// A point in a namespace's ruleset history: the namespace (its netns cookie with the boot id: never reused; the inode on kernels before 5.14) and nf_tables' generation
/// counter, which every committed change by anyone moves on.
public struct KernelMark: Sendable, Equatable, Codable {
    public var namespace: UInt64
    public var generation: UInt32
    public init(namespace: UInt64, generation: UInt32) { self.namespace = namespace; self.generation = generation }
}

/// What an apply did in the kernel.
public struct ApplyReport: Sendable, Equatable {
    /// Where the kernel stood right after the change (nftables), to be handed back as the
    /// ruleset's `kernelMark` next time.
    public var kernelMark: KernelMark?
    /// Whether the backend read the kernel's rules back to plan the change (false when the
    /// kernel mark showed nothing had changed since docknfv's last change).
    public var kernelRead = true
    /// Without a whole read: the chains whose rule handles were read (a delete or an insert
    /// names a kernel rule by its handle).
    public var handlesRead: [String] = []
    /// Tables changed (in order).
    public var committed: [TableKey] = []
    /// Tables already as wanted.
    public var unchanged: [TableKey] = []
    /// Sets created, changed or destroyed.
    public var sets: [String] = []
    public init() {}
    public var changedAnything: Bool { !committed.isEmpty || !sets.isEmpty }
}

/// A netfilter backend: makes the kernel hold one owner's ruleset, in the current thread's
/// network namespace. Implementations never touch objects of other owners or of other programs.
public protocol RuleBackend {
    var kind: BackendKind { get }
    /// Human-readable, for `status`.
    var name: String { get }
    /// Everything `apply` would refuse about the rules, without touching the kernel.
    func validate(_ desired: Ruleset) throws
    /// Makes the kernel hold `desired` (what `previous` described is replaced) as atomically as
    /// the backend can: nftables in one batch, x_tables in one commit per table with the earlier
    /// tables put back when a later one fails.
    func apply(_ desired: Ruleset, previous: Ruleset) throws -> ApplyReport
    /// What differs between `desired` and the kernel, per (family, table); sets under their family's filter key.
    func check(_ desired: Ruleset) throws -> [(TableKey, TableDrift)]
    /// Removes everything of `previous.owner` (policies it set go back to ACCEPT). Returns whether anything was there.
    func remove(_ previous: Ruleset) throws -> Bool
    /// Whether this netns holds any rules of this backend's kind (docknfv's or anyone's).
    func namespaceHoldsRules() -> Bool
    /// Appends rules at the end of chains that already hold rules of `owner`, without reading or
    /// re-planning the rest — only when the kernel is known to be exactly where `mark` says
    /// docknfv left it. nil: not done (the caller applies the whole ruleset instead). The rules
    /// must have passed `validate` in a ruleset with the same chains and sets.
    func append(_ rules: [AppendedRule], owner: Owner, sets: [String: SetSpec], mark: KernelMark?) throws -> ApplyReport?
}

extension RuleBackend {
    public func append(_ rules: [AppendedRule], owner: Owner, sets: [String: SetSpec], mark: KernelMark?) throws -> ApplyReport? { nil }
}

/// A rule to append at the end of a chain (`RuleBackend.append`).
public struct AppendedRule: Sendable {
    public var key: TableKey
    public var chain: String
    public var entry: RuleEntry
    /// Its 0-based position once appended: how many of the owner's rules the chain holds before
    /// it (a backend without a kernel mark checks the kernel's chain against it).
    public var index: Int
    public init(key: TableKey, chain: String, entry: RuleEntry, index: Int) { self.key = key; self.chain = chain; self.entry = entry; self.index = index }
}
