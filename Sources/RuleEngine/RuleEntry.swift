/// A rule as the engine receives it: its canonical text (`iptables-save` syntax, its identity) and
/// its model, parsed the first time a backend needs it. Rules loaded from a state docknfv wrote
/// are `trusted`: they were validated when they were added, so a change to one rule among
/// thousands validates, parses and translates only what changed.
public final class RuleEntry: @unchecked Sendable { // the cache is filled once, by the one thread using the entry
    public let text: String
    public let family: IPFamily
    public let trusted: Bool
    private var cached: Rule?
    private var cachedFingerprint: UInt64?
    /// The (table, chain, hooks) context the rule was last found valid in: an entry carried over
    /// from the last change is not checked again in the same place.
    var validatedContext: ValidationContext?

    public init(_ rule: Rule) {
        text = RuleRenderer.render(rule)
        family = rule.family
        trusted = false
        cached = rule
    }

    public init(text: String, family: IPFamily, trusted: Bool) {
        self.text = text
        self.family = family
        self.trusted = trusted
    }

    /// The parsed rule; a text that does not parse (a hand-edited state) is an invalid state.
    public func rule() throws -> Rule {
        if let cached { return cached }
        let parsed: [Rule]
        // Stored texts are what `save` prints and `import` reads back: iptables-restore syntax.
        var parser = RuleParser(family: family)
        parser.restoreSyntax = true
        do { parsed = try parser.parse(text) } catch {
            throw EngineError(.invalidState, "stored rule \"\(text)\" cannot be read: \(error)", cause: error)
        }
        guard parsed.count == 1 else { throw EngineError(.invalidState, "stored rule \"\(text)\" is not a single rule") }
        cached = parsed[0]
        return parsed[0]
    }

    /// 64-bit FNV-1a of the text: the identity a backend stores with the kernel's copy.
    public var fingerprint: UInt64 {
        if let cachedFingerprint { return cachedFingerprint }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        cachedFingerprint = hash
        return hash
    }
}

/// Where a rule was checked: its table, chain and the hooks that reach that chain.
struct ValidationContext: Equatable {
    var table: NetfilterTable
    var chain: String
    var hooks: Set<NetfilterHook>?
}
