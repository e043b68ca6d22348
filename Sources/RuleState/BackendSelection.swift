import IPTables
import NFTables
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// What the user asked for with `--backend` (or a config's `backend` key).
public enum BackendChoice: String, Sendable, CaseIterable, Codable {
    case auto, nftables, iptables

    public init(parsing text: String) throws {
        guard let choice = BackendChoice(rawValue: text.lowercased()) else {
            throw EngineError(.invalidInput, "backend \(DisplayText.quoted(text)): expected auto, nftables or iptables")
        }
        self = choice
    }
}

/// The backend a namespace's rules go through, and why (for `status`).
public struct BackendSelection: Sendable, Equatable {
    public var kind: BackendKind
    public var reason: String
}

/// Picks the backend. `auto` keeps what docknfv's state already uses; otherwise, when the
/// namespace holds rules of only one kind, that kind; otherwise the variant the system's
/// `iptables` command is (as update-alternatives set it), so that the operator's usual tool shows
/// docknfv's rules. Runs inside the namespace (it looks at what the namespace holds).
public struct BackendSelector: Sendable {
    /// Where the system's `iptables` command is looked for. Only resolved with realpath(3), to see
    /// which variant update-alternatives chose; never run.
    public var iptablesPaths = ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"]
    /// Probes of what the namespace holds (replaceable in tests).
    public var legacyHoldsRules: @Sendable () -> Bool = { XTablesBackend().namespaceHoldsRules() }
    public var nftablesHoldsRules: @Sendable () -> Bool = { NFTablesBackend().namespaceHoldsRules() }
    /// Whether legacy x_tables can be used at all: libiptc talks over a raw socket, so it needs
    /// CAP_NET_RAW (a container given only NET_ADMIN has nftables alone).
    public var legacyUsable: @Sendable () -> Bool = { BackendSelector.effectiveCapability(13) } // CAP_NET_RAW

    public init() {}

    public func select(_ choice: BackendChoice, recorded: BackendKind?, stateHasRules: Bool) throws -> BackendSelection {
        switch choice {
        case .nftables, .iptables:
            let kind: BackendKind = choice == .nftables ? .nftables : .iptables
            if let recorded, recorded != kind, stateHasRules {
                throw EngineError(.conflict, "docknfv's rules here are held by \(recorded.rawValue); move them with `docknfvctl migrate --to \(kind.rawValue)` first")
            }
            return BackendSelection(kind: kind, reason: "chosen with --backend \(kind.rawValue)")
        case .auto:
            if let recorded, stateHasRules { return BackendSelection(kind: recorded, reason: "docknfv's state here uses it") }
            let detected = detect()
            if detected.kind == .iptables && !legacyUsable() {
                return BackendSelection(kind: .nftables, reason: detected.reason + ", but without CAP_NET_RAW legacy x_tables cannot be used")
            }
            return detected
        }
    }

    /// `auto` without a recorded backend: the namespace's rules, else the system's iptables.
    func detect() -> BackendSelection {
        let legacy = legacyHoldsRules(), nft = nftablesHoldsRules()
        if legacy && !nft { return BackendSelection(kind: .iptables, reason: "this namespace holds only legacy x_tables rules") }
        if nft && !legacy { return BackendSelection(kind: .nftables, reason: "this namespace holds only nf_tables rules") }
        let variant = systemVariant()
        let holds = legacy ? "both kinds of rules" : "no rules yet"
        switch variant {
        case .some(.iptables): return BackendSelection(kind: .iptables, reason: "this namespace holds \(holds) and the system's iptables is the legacy variant")
        case .some(.nftables): return BackendSelection(kind: .nftables, reason: "this namespace holds \(holds) and the system's iptables is the nf_tables variant")
        case .none: return BackendSelection(kind: .nftables, reason: "this namespace holds \(holds) and there is no iptables command")
        }
    }

    /// Whether capability `number` is in this process's effective set (`CapEff` in /proc/self/status).
    public static func effectiveCapability(_ number: Int) -> Bool {
        guard let file = fopen("/proc/self/status", "r") else { return true }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 512)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard line.hasPrefix("CapEff:") else { continue }
            guard let mask = UInt64(String(line.dropFirst("CapEff:".count)).trimming(" \t"), radix: 16) else { return true }
            return mask & (1 << UInt64(number)) != 0
        }
        return true
    }

    /// The variant the `iptables` command is: its symlink chain ends in xtables-legacy-multi or
    /// xtables-nft-multi (or the file is named iptables-legacy / iptables-nft).
    public func systemVariant() -> BackendKind? {
        for path in iptablesPaths {
            var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            guard realpath(path, &resolved) != nil else { continue }
            let target = String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let name = target.split(separator: "/").last.map(String.init) ?? target
            if name.contains("legacy") { return .iptables }
            if name.contains("nft") { return .nftables }
        }
        return nil
    }

    /// `session`: an nftables socket kept open across changes (a daemon's).
    public static func backend(_ kind: BackendKind, session: NFTablesSession? = nil) -> any RuleBackend {
        kind == .nftables ? NFTablesBackend(session: session) : XTablesBackend()
    }
}

/// What nf_tables holds in the namespace, for `status`.
public enum NFTablesInventory {
    public static func tables() -> [String] { NFTablesBackend.tables() }
}

/// Whether legacy x_tables holds any rules in the namespace, for `status`.
public enum XTablesInventory {
    public static func holdsRules() -> Bool { XTablesBackend().namespaceHoldsRules() }
}
