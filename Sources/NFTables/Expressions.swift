import RuleEngine

/// nf_tables expressions as plain values (the kernel's `nft_*` expressions, with the attributes
/// docknfv uses). Translation produces these without touching libnftnl or the kernel, so it can
/// be tested on its own; `ExprEncoder` turns them into libnftnl objects.
enum NFTExpr: Equatable, Sendable {
    enum PayloadBase: UInt32, Sendable { case network = 1, transport = 2 }
    enum CmpOp: UInt32, Sendable { case eq = 0, neq = 1, lt = 2, lte = 3, gt = 4, gte = 5 }

    case payload(base: PayloadBase, offset: UInt32, length: UInt32, dreg: UInt32)
    case meta(key: UInt32, dreg: UInt32)
    case metaSet(key: UInt32, sreg: UInt32)
    case ct(key: UInt32, dreg: UInt32)
    case cmp(CmpOp, sreg: UInt32, data: [UInt8])
    /// Inclusive range; `inverted` is NFT_RANGE_NEQ.
    case range(inverted: Bool, sreg: UInt32, from: [UInt8], to: [UInt8])
    /// dreg = (sreg & mask) ^ xor
    case bitwise(sreg: UInt32, dreg: UInt32, mask: [UInt8], xor: [UInt8])
    /// Lookup in a named set, or (setID set) in an anonymous set of the same batch.
    case lookup(sreg: UInt32, set: String, setID: UInt32?, inverted: Bool)
    case immediate(dreg: UInt32, data: [UInt8])
    case verdict(Verdict)
    case counter
    /// `rate` packets per `unit` seconds.
    case limit(rate: UInt64, unit: UInt64, burst: UInt32)
    case reject(type: UInt32, code: UInt8)
    case log(prefix: String?, level: UInt32?, group: UInt16?, snaplen: UInt32?, threshold: UInt16?)
    case nat(type: UInt32, family: UInt32, addrMin: UInt32?, addrMax: UInt32?, protoMin: UInt32?, protoMax: UInt32?, flags: UInt32)
    case masq(protoMin: UInt32?, protoMax: UInt32?, flags: UInt32)
    case redir(protoMin: UInt32?, protoMax: UInt32?, flags: UInt32)
    case rt(key: UInt32, dreg: UInt32)
    /// A route lookup for the packet's address (`flags`: NFTA_FIB_F_*); `result` says what it yields.
    case fib(result: UInt32, flags: UInt32, dreg: UInt32)
    case byteorderHton(sreg: UInt32, dreg: UInt32, length: UInt32, size: UInt32)
    case tcpOptionWrite(type: UInt8, offset: UInt32, length: UInt32, sreg: UInt32)

    enum Verdict: Equatable, Sendable {
        case accept, drop, `return`, jump(String), goto(String)
        var code: Int32 {
            switch self {
            case .accept: return 1 // NF_ACCEPT
            case .drop: return 0 // NF_DROP
            case .return: return -5 // NFT_RETURN
            case .jump: return -3 // NFT_JUMP
            case .goto: return -4 // NFT_GOTO
            }
        }
    }

    var libnftnlName: String {
        switch self {
        case .payload: return "payload"
        case .meta, .metaSet: return "meta"
        case .ct: return "ct"
        case .cmp: return "cmp"
        case .range: return "range"
        case .bitwise: return "bitwise"
        case .lookup: return "lookup"
        case .immediate, .verdict: return "immediate"
        case .counter: return "counter"
        case .limit: return "limit"
        case .reject: return "reject"
        case .log: return "log"
        case .nat: return "nat"
        case .masq: return "masq"
        case .redir: return "redir"
        case .rt: return "rt"
        case .fib: return "fib"
        case .byteorderHton: return "byteorder"
        case .tcpOptionWrite: return "exthdr"
        }
    }
}

/// Kernel constants from linux/netfilter/nf_tables.h (stable ABI), named as there.
enum NFT {
    static let reg1: UInt32 = 1, reg2: UInt32 = 2, reg3: UInt32 = 3, reg4: UInt32 = 4
    /// NFT_REG32_00: the 4-byte registers that concatenations are loaded into.
    static let reg32_00: UInt32 = 8
    static let metaMark: UInt32 = 3, metaIifname: UInt32 = 6, metaOifname: UInt32 = 7, metaSkuid: UInt32 = 10, metaSkgid: UInt32 = 11
    static let metaL4proto: UInt32 = 16
    static let ctState: UInt32 = 0, ctStatus: UInt32 = 2
    static let rtTCPMSS: UInt32 = 3
    /// NFT_FIB_RESULT_ADDRTYPE (the RTN_* type, host order) and the NFTA_FIB_F_* flags.
    static let fibResultAddrtype: UInt32 = 3
    static let fibSaddr: UInt32 = 1 << 0, fibDaddr: UInt32 = 1 << 1, fibIIF: UInt32 = 1 << 3, fibOIF: UInt32 = 1 << 4
    static let rejectICMP: UInt32 = 0, rejectTCPReset: UInt32 = 1
    static let natSNAT: UInt32 = 0, natDNAT: UInt32 = 1
    /// NF_NAT_RANGE_* flags.
    static let mapIPs: UInt32 = 1, protoSpecified: UInt32 = 2, protoRandom: UInt32 = 4, persistent: UInt32 = 8, protoRandomFully: UInt32 = 16
    static let nfprotoIPv4: UInt32 = 2, nfprotoIPv6: UInt32 = 10
    /// NFT_SET_* flags.
    static let setAnonymous: UInt32 = 1, setConstant: UInt32 = 2, setInterval: UInt32 = 4
    static let elemIntervalEnd: UInt32 = 1
    /// nft's datatype ids (shown by `nft list`): ipv4_addr, ipv6_addr, inet_proto, inet_service, fib_addrtype.
    static let typeIPv4: UInt32 = 7, typeIPv6: UInt32 = 8, typeProto: UInt32 = 12, typeService: UInt32 = 13, typeMark: UInt32 = 19, typeFibAddr: UInt32 = 38

    static func family(_ family: IPFamily) -> UInt16 { family == .v4 ? 2 : 10 } // NFPROTO_IPV4 / NFPROTO_IPV6
}

/// Byte helpers: network order for packet fields, host order for registers the kernel fills in
/// host order (mark, ct state).
enum Bytes {
    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
    static func be32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
    static func host32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
    /// A 4-byte register slot holding `bytes` (concatenations and immediates are register-sized).
    static func padded(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4) }
    static func mask(prefixLength: Int, bytes count: Int) -> [UInt8] {
        (0..<count).map { index in
            let bits = max(0, min(8, prefixLength - index * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
    }
    /// The value + 1 (big-endian), nil when it overflows.
    static func successor(_ bytes: [UInt8]) -> [UInt8]? {
        var out = bytes
        for index in out.indices.reversed() {
            if out[index] == 0xff { out[index] = 0 } else { out[index] += 1; return out }
        }
        return nil
    }
}
