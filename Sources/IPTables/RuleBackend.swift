import Rules

/// What the rule manager needs from a netfilter backend, per (family, table). `TableEngine`
/// (legacy x_tables through libiptc) is the one implementation today; a native nftables backend
/// can take its place without the layers above changing.
public protocol RuleBackend {
    /// Human-readable name for `status`.
    var name: String { get }
    /// Builds every rule without touching the kernel; throws what `apply` would for bad rules.
    func validate(_ desired: TableRules) throws -> Int
    /// Makes the kernel hold `desired` in one atomic step. Returns false when it already did.
    func apply(_ desired: TableRules) throws -> Bool
    /// What differs between `desired` and the kernel.
    func check(_ desired: TableRules) throws -> TableDrift
    /// Removes everything docknfv owns in the table.
    func remove(family: IPFamily, table: NetfilterTable, policies: [String]) throws -> Bool
}

extension TableEngine: RuleBackend {
    public var name: String { "legacy x_tables through libiptc" }
}
