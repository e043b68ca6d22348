import RuleEngine

/// One owner's kernel chain names in x_tables, where every owner shares the built-in chains and
/// the one chain namespace of each table (at most 28 characters a name).
///
/// docknfvctl's rules (`Owner.cli`) live in `DNFV-<chain>`; every other owner's in
/// `DN<8 lowercase hex digits>-<chain>`, the digits being the 32-bit FNV-1a hash of the owner's
/// name (owner names are up to 32 characters: too long to spell out). `F` and `V` are not
/// lowercase hex digits, so neither prefix is ever a prefix of the other. Two owners whose names
/// hash alike would share chains: their jumps name the owner, and a jump of another owner into
/// this owner's chains is refused (`IPTablesError.sharedPrefix`) instead of being taken over.
/// The hash is part of what the kernel holds: it must never change.
public struct OwnerChains: Sendable, Equatable {
    public let owner: Owner
    /// `DNFV-`, or `DN1a2b3c4d-`.
    public let prefix: String

    public init(_ owner: Owner) {
        self.owner = owner
        guard owner != .cli else { prefix = ChainNames.prefix; return }
        var hash: UInt32 = 0x811c_9dc5
        for byte in owner.name.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        let digits = String(hash, radix: 16)
        prefix = "DN" + String(repeating: "0", count: 8 - digits.count) + digits + "-"
    }

    /// The kernel chain of a built-in or user chain of the owner's rules.
    public func kernelName(_ chain: String) -> String { prefix + chain }
    public func owns(_ kernelChain: String) -> Bool { kernelChain.hasPrefix(prefix) }
    public func chain(ofKernel kernelChain: String) -> String? {
        owns(kernelChain) ? String(kernelChain.dropFirst(prefix.count)) : nil
    }

    /// The longest user chain name the owner can have.
    public var maxChainLength: Int { ChainNames.maxKernelLength - prefix.utf8.count }
    public func isValidUserChain(_ name: String) -> Bool { ChainNames.isValidUserChain(name, prefix: prefix) }

    /// The comment on the owner's jumps out of the built-in chains: `docknfv` for docknfvctl's
    /// (as it always was), `docknfv <owner>` for another owner's, so `iptables -S` says whose it is.
    public var jumpComment: String { owner == .cli ? "docknfv" : "docknfv \(owner.name)" }

    /// Whether the owner's jumps out of one built-in chain (0-based rule positions) are where they
    /// belong: docknfvctl's is the chain's first rule; another owner's is there once, anywhere
    /// (owners insert theirs at the top, after docknfvctl's, and later jumps push earlier ones down).
    func jumpInPlace(_ positions: [Int]) -> Bool { owner == .cli ? positions == [0] : positions.count == 1 }
}
