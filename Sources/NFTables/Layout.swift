import RuleEngine

/// Where an owner's rules live in nf_tables: one table per family (`ip docknfv`, `ip6 docknfv`,
/// or `docknfv-<owner>` for other owners), a base chain per (iptables table, built-in chain) named
/// `filter-INPUT`, `nat-POSTROUTING`…, hooked at the priority the iptables table has, and a
/// regular chain per user chain named `<table>-<name>`.
enum Layout {
    static func tableName(_ owner: Owner) -> String { owner == .cli ? "docknfv" : "docknfv-\(owner.name)" }

    static func chainName(_ table: NetfilterTable, _ chain: String) -> String { "\(table.rawValue)-\(chain)" }

    /// (table, chain) of a kernel chain name docknfv made.
    static func split(_ kernelChain: String) -> (NetfilterTable, String)? {
        guard let dash = kernelChain.firstIndex(of: "-"), let table = NetfilterTable(rawValue: String(kernelChain[..<dash])) else { return nil }
        return (table, String(kernelChain[kernelChain.index(after: dash)...]))
    }

    struct BaseChain: Equatable, Sendable {
        /// "filter", "nat" or "route".
        var type: String
        var hook: UInt32
        var priority: Int32
    }

    /// NF_INET_* hooks and the NF_IP_PRI_* priorities of the iptables tables.
    static func baseChain(_ table: NetfilterTable, _ chain: String) -> BaseChain? {
        let hooks: [String: UInt32] = ["PREROUTING": 0, "INPUT": 1, "FORWARD": 2, "OUTPUT": 3, "POSTROUTING": 4]
        guard table.builtinChains.contains(chain), let hook = hooks[chain] else { return nil }
        switch table {
        case .raw: return BaseChain(type: "filter", hook: hook, priority: -300)
        case .mangle: return BaseChain(type: chain == "OUTPUT" ? "route" : "filter", hook: hook, priority: -150)
        case .nat: return BaseChain(type: "nat", hook: hook, priority: chain == "PREROUTING" || chain == "OUTPUT" ? -100 : 100)
        case .filter: return BaseChain(type: "filter", hook: hook, priority: 0)
        }
    }
}

/// A 64-bit FNV-1a digest: the identity docknfv stores with each rule it adds, so the next run can
/// tell which kernel rules are which desired rules without decoding their expressions.
enum Fingerprint {
    /// Bump when a translation changes, so rules added by an older version are replaced.
    static let translationVersion = "nft1"

    static func of(_ entry: RuleEntry) -> UInt64 {
        var hash = entry.fingerprint
        for byte in translationVersion.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }
}

/// The user data docknfv attaches to a rule: nft's comment (type 0, shown by `nft list`) and
/// docknfv's fingerprint (type 0xd0, ignored by nft).
enum RuleUserData {
    static let commentType: UInt8 = 0
    static let fingerprintType: UInt8 = 0xd0

    static func encode(comment: String?, fingerprint: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        if let comment {
            // The translator refuses comments that would not fit (Translator.maxCommentBytes).
            let bytes = Array(comment.utf8) + [0]
            precondition(bytes.count <= 255, "comment longer than the translator allows")
            out += [commentType, UInt8(bytes.count)] + bytes
        }
        out += [fingerprintType, 8] + withUnsafeBytes(of: fingerprint.bigEndian) { Array($0) }
        return out
    }

    static func fingerprint(in data: UnsafeRawBufferPointer) -> UInt64? {
        var index = 0
        while index + 2 <= data.count {
            let type = data[index], length = Int(data[index + 1])
            guard index + 2 + length <= data.count else { return nil }
            if type == fingerprintType && length == 8 {
                return (0..<8).reduce(UInt64(0)) { ($0 << 8) | UInt64(data[index + 2 + $1]) }
            }
            index += 2 + length
        }
        return nil
    }
}

/// A set's nf_tables shape and its elements as keys.
struct SetShape: Equatable, Sendable {
    var keyType: UInt32
    var keyLength: UInt32
    var interval: Bool

    init(_ spec: SetSpec) {
        let address = spec.family == .v4 ? NFT.typeIPv4 : NFT.typeIPv6
        switch spec.type {
        case .hashNet: keyType = address; keyLength = UInt32(spec.family.byteCount); interval = true
        case .hashIP: keyType = address; keyLength = UInt32(spec.family.byteCount); interval = false
        case .hashIPPort:
            keyType = (address << 12) | (NFT.typeProto << 6) | NFT.typeService // nft's concatenated type id
            keyLength = UInt32(spec.family.byteCount) + 8; interval = false
        case .hashIPMark:
            keyType = (address << 6) | NFT.typeMark
            keyLength = UInt32(spec.family.byteCount) + 4; interval = false
        }
    }

    init(keyType: UInt32, keyLength: UInt32, interval: Bool) { self.keyType = keyType; self.keyLength = keyLength; self.interval = interval }

    /// Element keys as inclusive ranges (a single key is first == last).
    static func ranges(_ spec: SetSpec) -> [(first: [UInt8], last: [UInt8])] {
        switch spec.type {
        case .hashNet:
            return Translator.coalesce(spec.entries.map { entry in
                let bytes = entry.address.bytes
                let mask = Bytes.mask(prefixLength: entry.effectivePrefixLength, bytes: bytes.count)
                return (zip(bytes, mask).map { $0 & $1 }, zip(bytes, mask).map { $0 | ~$1 })
            })
        case .hashIP:
            return Set(spec.entries.map(\.address.bytes)).sorted { $0.lexicographicallyPrecedes($1) }.map { ($0, $0) }
        case .hashIPPort:
            let keys = Set(spec.entries.map { $0.address.bytes + Bytes.padded([$0.proto ?? 6]) + Bytes.padded(Bytes.be16($0.port ?? 0)) })
            return keys.sorted { $0.lexicographicallyPrecedes($1) }.map { ($0, $0) }
        case .hashIPMark:
            // The mark as `meta mark` loads it into a register: host order.
            let keys = Set(spec.entries.map { $0.address.bytes + Bytes.host32($0.mark ?? 0) })
            return keys.sorted { $0.lexicographicallyPrecedes($1) }.map { ($0, $0) }
        }
    }
}
