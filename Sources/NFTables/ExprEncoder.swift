import CLibNFTNL
import RuleEngine

/// Turns expression values into libnftnl objects added to a rule.
enum ExprEncoder {
    static func add(_ expressions: [NFTExpr], to rule: OpaquePointer, anonymousSetIDs: [UInt32]) {
        for expression in expressions {
            guard let e = nftnl_expr_alloc(expression.libnftnlName) else { continue }
            encode(expression, into: e, anonymousSetIDs: anonymousSetIDs)
            nftnl_rule_add_expr(rule, e)
        }
    }

    static func set(_ e: OpaquePointer, _ attribute: Int, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { nftnl_expr_set(e, UInt16(attribute), $0.baseAddress, UInt32($0.count)) }
    }
    static func u32(_ e: OpaquePointer, _ attribute: Int, _ value: UInt32) { nftnl_expr_set_u32(e, UInt16(attribute), value) }

    static func encode(_ expression: NFTExpr, into e: OpaquePointer, anonymousSetIDs: [UInt32]) {
        switch expression {
        case .payload(let base, let offset, let length, let dreg):
            u32(e, NFTNL_EXPR_PAYLOAD_BASE, base.rawValue); u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset)
            u32(e, NFTNL_EXPR_PAYLOAD_LEN, length); u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg)
        case .meta(let key, let dreg):
            u32(e, NFTNL_EXPR_META_KEY, key); u32(e, NFTNL_EXPR_META_DREG, dreg)
        case .metaSet(let key, let sreg):
            u32(e, NFTNL_EXPR_META_KEY, key); u32(e, NFTNL_EXPR_META_SREG, sreg)
        case .ct(let key, let dreg):
            u32(e, NFTNL_EXPR_CT_KEY, key); u32(e, NFTNL_EXPR_CT_DREG, dreg)
        case .cmp(let op, let sreg, let data):
            u32(e, NFTNL_EXPR_CMP_SREG, sreg); u32(e, NFTNL_EXPR_CMP_OP, op.rawValue); set(e, NFTNL_EXPR_CMP_DATA, data)
        case .range(let inverted, let sreg, let from, let to):
            u32(e, NFTNL_EXPR_RANGE_SREG, sreg); u32(e, NFTNL_EXPR_RANGE_OP, inverted ? 1 : 0)
            set(e, NFTNL_EXPR_RANGE_FROM_DATA, from); set(e, NFTNL_EXPR_RANGE_TO_DATA, to)
        case .bitwise(let sreg, let dreg, let mask, let xor):
            u32(e, NFTNL_EXPR_BITWISE_SREG, sreg); u32(e, NFTNL_EXPR_BITWISE_DREG, dreg)
            u32(e, NFTNL_EXPR_BITWISE_LEN, UInt32(mask.count))
            set(e, NFTNL_EXPR_BITWISE_MASK, mask); set(e, NFTNL_EXPR_BITWISE_XOR, xor)
        case .lookup(let sreg, let name, let setID, let inverted):
            u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg)
            _ = nftnl_expr_set_str(e, UInt16(NFTNL_EXPR_LOOKUP_SET), name)
            if let setID { u32(e, NFTNL_EXPR_LOOKUP_SET_ID, anonymousSetIDs[Int(setID)]) }
            if inverted { u32(e, NFTNL_EXPR_LOOKUP_FLAGS, 1) } // NFT_LOOKUP_F_INV
        case .immediate(let dreg, let data):
            u32(e, NFTNL_EXPR_IMM_DREG, dreg); set(e, NFTNL_EXPR_IMM_DATA, data)
        case .verdict(let verdict):
            u32(e, NFTNL_EXPR_IMM_DREG, 0) // NFT_REG_VERDICT
            u32(e, NFTNL_EXPR_IMM_VERDICT, UInt32(bitPattern: verdict.code))
            switch verdict {
            case .jump(let chain), .goto(let chain): _ = nftnl_expr_set_str(e, UInt16(NFTNL_EXPR_IMM_CHAIN), chain)
            default: break
            }
        case .counter:
            break
        case .limit(let rate, let unit, let burst):
            nftnl_expr_set_u64(e, UInt16(NFTNL_EXPR_LIMIT_RATE), rate); nftnl_expr_set_u64(e, UInt16(NFTNL_EXPR_LIMIT_UNIT), unit)
            u32(e, NFTNL_EXPR_LIMIT_BURST, burst); u32(e, NFTNL_EXPR_LIMIT_TYPE, 0) // NFT_LIMIT_PKTS
        case .reject(let type, let code):
            u32(e, NFTNL_EXPR_REJECT_TYPE, type); nftnl_expr_set_u8(e, UInt16(NFTNL_EXPR_REJECT_CODE), code)
        case .log(let prefix, let level, let group, let snaplen, let threshold):
            if let prefix { _ = nftnl_expr_set_str(e, UInt16(NFTNL_EXPR_LOG_PREFIX), prefix) }
            if let level { u32(e, NFTNL_EXPR_LOG_LEVEL, level) }
            if let group { nftnl_expr_set_u16(e, UInt16(NFTNL_EXPR_LOG_GROUP), group) }
            if let snaplen { u32(e, NFTNL_EXPR_LOG_SNAPLEN, snaplen) }
            if let threshold { nftnl_expr_set_u16(e, UInt16(NFTNL_EXPR_LOG_QTHRESHOLD), threshold) }
        case .nat(let type, let family, let addrMin, let addrMax, let protoMin, let protoMax, let flags):
            u32(e, NFTNL_EXPR_NAT_TYPE, type); u32(e, NFTNL_EXPR_NAT_FAMILY, family)
            if let addrMin { u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, addrMin) }
            if let addrMax { u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX, addrMax) }
            if let protoMin { u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, protoMin) }
            if let protoMax { u32(e, NFTNL_EXPR_NAT_REG_PROTO_MAX, protoMax) }
            if flags != 0 { u32(e, NFTNL_EXPR_NAT_FLAGS, flags) }
        case .masq(let protoMin, let protoMax, let flags):
            if let protoMin { u32(e, NFTNL_EXPR_MASQ_REG_PROTO_MIN, protoMin) }
            if let protoMax { u32(e, NFTNL_EXPR_MASQ_REG_PROTO_MAX, protoMax) }
            if flags != 0 { u32(e, NFTNL_EXPR_MASQ_FLAGS, flags) }
        case .redir(let protoMin, let protoMax, let flags):
            if let protoMin { u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, protoMin) }
            if let protoMax { u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX, protoMax) }
            if flags != 0 { u32(e, NFTNL_EXPR_REDIR_FLAGS, flags) }
        case .rt(let key, let dreg):
            u32(e, NFTNL_EXPR_RT_KEY, key); u32(e, NFTNL_EXPR_RT_DREG, dreg)
        case .fib(let result, let flags, let dreg):
            u32(e, NFTNL_EXPR_FIB_RESULT, result); u32(e, NFTNL_EXPR_FIB_FLAGS, flags); u32(e, NFTNL_EXPR_FIB_DREG, dreg)
        case .byteorderHton(let sreg, let dreg, let length, let size):
            u32(e, NFTNL_EXPR_BYTEORDER_SREG, sreg); u32(e, NFTNL_EXPR_BYTEORDER_DREG, dreg)
            u32(e, NFTNL_EXPR_BYTEORDER_OP, 1) // NFT_BYTEORDER_HTON
            u32(e, NFTNL_EXPR_BYTEORDER_LEN, length); u32(e, NFTNL_EXPR_BYTEORDER_SIZE, size)
        case .tcpOptionWrite(let type, let offset, let length, let sreg):
            nftnl_expr_set_u8(e, UInt16(NFTNL_EXPR_EXTHDR_TYPE), type)
            u32(e, NFTNL_EXPR_EXTHDR_OFFSET, offset); u32(e, NFTNL_EXPR_EXTHDR_LEN, length)
            u32(e, NFTNL_EXPR_EXTHDR_OP, 1) // NFT_EXTHDR_OP_TCPOPT
            u32(e, NFTNL_EXPR_EXTHDR_SREG, sreg)
        }
    }
}
