@_exported import NetTypes

/// The netfilter tables docknfv manages.
public enum NetfilterTable: String, CaseIterable, Sendable, Hashable, Comparable {
    case raw, mangle, nat, filter

    public var builtinChains: [String] {
        switch self {
        case .filter: return ["INPUT", "FORWARD", "OUTPUT"]
        case .nat: return ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
        case .mangle: return ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        case .raw: return ["PREROUTING", "OUTPUT"]
        }
    }

    public static func < (a: NetfilterTable, b: NetfilterTable) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// A value that a rule may match or match the opposite of (`! -s 10.0.0.0/8`).
public struct Negatable<Value: Hashable & Sendable>: Hashable, Sendable {
    public var value: Value
    public var inverted: Bool
    public init(_ value: Value, inverted: Bool = false) { self.value = value; self.inverted = inverted }
}

/// A port or an inclusive range of ports.
public struct PortRange: Hashable, Sendable {
    public var lower: UInt16
    public var upper: UInt16
    public init(_ lower: UInt16, _ upper: UInt16? = nil) { self.lower = lower; self.upper = upper ?? lower }
    public static let any = PortRange(0, 65535)
    public var isSingle: Bool { lower == upper }
}

public struct TCPFlags: Hashable, Sendable {
    public var mask: UInt8
    public var compare: UInt8
    public init(mask: UInt8, compare: UInt8) { self.mask = mask; self.compare = compare }
}

public struct TCPMatch: Hashable, Sendable {
    public var sourcePorts: Negatable<PortRange>?
    public var destinationPorts: Negatable<PortRange>?
    public var flags: Negatable<TCPFlags>?
    public init(sourcePorts: Negatable<PortRange>? = nil, destinationPorts: Negatable<PortRange>? = nil, flags: Negatable<TCPFlags>? = nil) {
        self.sourcePorts = sourcePorts
        self.destinationPorts = destinationPorts
        self.flags = flags
    }
}

public struct UDPMatch: Hashable, Sendable {
    public var sourcePorts: Negatable<PortRange>?
    public var destinationPorts: Negatable<PortRange>?
    public init(sourcePorts: Negatable<PortRange>? = nil, destinationPorts: Negatable<PortRange>? = nil) {
        self.sourcePorts = sourcePorts
        self.destinationPorts = destinationPorts
    }
}

/// ICMP / ICMPv6 type and code range. Type 255 with codes 0–255 is "any" (IPv4).
public struct ICMPMatch: Hashable, Sendable {
    public var type: UInt8
    public var codes: ClosedRange<UInt8>
    public var inverted: Bool
    public init(type: UInt8, codes: ClosedRange<UInt8> = 0...255, inverted: Bool = false) {
        self.type = type
        self.codes = codes
        self.inverted = inverted
    }
    public var isAny: Bool { type == 255 && codes == 0...255 }
}

public struct MultiportMatch: Hashable, Sendable {
    public enum Direction: String, Hashable, Sendable { case source = "sports", destination = "dports", either = "ports" }
    public var direction: Direction
    public var ports: [PortRange]
    public var inverted: Bool
    public init(direction: Direction, ports: [PortRange], inverted: Bool = false) {
        self.direction = direction; self.ports = ports; self.inverted = inverted
    }
}

public enum ConntrackState: String, CaseIterable, Hashable, Sendable {
    // The order iptables prints them in.
    case invalid = "INVALID", new = "NEW", related = "RELATED", established = "ESTABLISHED"
    case untracked = "UNTRACKED", snat = "SNAT", dnat = "DNAT"

    /// XT_CONNTRACK_STATE_* bit.
    public var bit: UInt16 {
        switch self {
        case .invalid: return 1 << 0
        case .established: return 1 << 1
        case .related: return 1 << 2
        case .new: return 1 << 3
        // XT_CONNTRACK_STATE_SNAT / _DNAT / _UNTRACKED: 1 << (IP_CT_NUMBER + 1…3), IP_CT_NUMBER = 5.
        case .snat: return 1 << 6
        case .dnat: return 1 << 7
        case .untracked: return 1 << 8
        }
    }
}

public struct ConntrackMatch: Hashable, Sendable {
    public var states: Set<ConntrackState>
    public var inverted: Bool
    public init(states: Set<ConntrackState>, inverted: Bool = false) { self.states = states; self.inverted = inverted }
}

public struct MarkMatch: Hashable, Sendable {
    public var value: UInt32
    public var mask: UInt32
    public var inverted: Bool
    public init(value: UInt32, mask: UInt32 = 0xffff_ffff, inverted: Bool = false) { self.value = value; self.mask = mask; self.inverted = inverted }
}

public struct SetMatch: Hashable, Sendable {
    public enum Direction: String, Hashable, Sendable { case src, dst }
    public var name: String
    public var directions: [Direction]
    public var inverted: Bool
    public init(name: String, directions: [Direction], inverted: Bool = false) { self.name = name; self.directions = directions; self.inverted = inverted }
}

public struct LimitMatch: Hashable, Sendable {
    /// iptables' `avg`: XT_LIMIT_SCALE (10000) × seconds between packets.
    public var average: UInt32
    public var burst: UInt32
    public init(average: UInt32, burst: UInt32 = 5) { self.average = average; self.burst = burst }
}

public struct AddressRange: Hashable, Sendable {
    public var first: IPAddress
    public var last: IPAddress
    public init(first: IPAddress, last: IPAddress) { self.first = first; self.last = last }
}

public struct IPRangeMatch: Hashable, Sendable {
    public var source: Negatable<AddressRange>?
    public var destination: Negatable<AddressRange>?
    public init(source: Negatable<AddressRange>? = nil, destination: Negatable<AddressRange>? = nil) { self.source = source; self.destination = destination }
}

/// Route types of `-m addrtype` as xt_addrtype stores them: bit `1 << RTN_x` per type.
public struct AddressTypes: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The RTN_* names in their kernel order (RTN_UNSPEC = 0 … RTN_XRESOLVE = 11), as iptables prints them.
    public static let names = ["UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
                               "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"]
    public static let local = AddressTypes(rawValue: 1 << 2)
    /// What xt_addrtype refuses in IPv6 rules: BROADCAST, BLACKHOLE, and PROHIBIT and above.
    public static let ipv4Only = AddressTypes(rawValue: 1 << 3 | 1 << 6 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11)

    /// The RTN_* values the set holds, in ascending order.
    public var routeTypes: [UInt32] { (0..<UInt32(Self.names.count)).filter { rawValue & (1 << $0) != 0 } }
    /// `LOCAL,BROADCAST`, in iptables' order.
    public var text: String { routeTypes.map { Self.names[Int($0)] }.joined(separator: ",") }
}

public struct AddrTypeMatch: Hashable, Sendable {
    /// `--limit-iface-in` / `--limit-iface-out`: look the address up for the packet's interface only.
    public enum InterfaceLimit: Hashable, Sendable { case input, output }
    public var source: Negatable<AddressTypes>?
    public var destination: Negatable<AddressTypes>?
    public var limit: InterfaceLimit?
    public init(source: Negatable<AddressTypes>? = nil, destination: Negatable<AddressTypes>? = nil, limit: InterfaceLimit? = nil) {
        self.source = source; self.destination = destination; self.limit = limit
    }
}

/// `-m owner`: the sending socket's file owner (fsuid / fsgid), ids as inclusive ranges.
public struct OwnerMatch: Hashable, Sendable {
    public var uid: Negatable<ClosedRange<UInt32>>?
    public var gid: Negatable<ClosedRange<UInt32>>?
    /// `--socket-exists` (true), `! --socket-exists` (false), or not tested (nil).
    public var socketExists: Bool?
    public init(uid: Negatable<ClosedRange<UInt32>>? = nil, gid: Negatable<ClosedRange<UInt32>>? = nil, socketExists: Bool? = nil) {
        self.uid = uid; self.gid = gid; self.socketExists = socketExists
    }
}

/// Extension matches (`-m NAME …`), in the order they appear in a rule.
public enum Match: Hashable, Sendable {
    case tcp(TCPMatch)
    case udp(UDPMatch)
    case icmp(ICMPMatch)
    case icmp6(ICMPMatch)
    case multiport(MultiportMatch)
    case conntrack(ConntrackMatch)
    case mark(MarkMatch)
    case set(SetMatch)
    case comment(String)
    case limit(LimitMatch)
    case iprange(IPRangeMatch)
    case addrtype(AddrTypeMatch)
    case owner(OwnerMatch)
}

/// REJECT's answer. Raw values are the kernel's `ipt_reject_with` / `ip6t_reject_with` numbers.
public struct RejectType: Hashable, Sendable {
    public var name: String
    public var code: UInt32

    public static let ipv4: [RejectType] = [
        .init(name: "icmp-net-unreachable", code: 0), .init(name: "icmp-host-unreachable", code: 1),
        .init(name: "icmp-proto-unreachable", code: 2), .init(name: "icmp-port-unreachable", code: 3),
        .init(name: "icmp-net-prohibited", code: 5), .init(name: "icmp-host-prohibited", code: 6),
        .init(name: "tcp-reset", code: 7), .init(name: "icmp-admin-prohibited", code: 8),
    ]
    public static let ipv6: [RejectType] = [
        .init(name: "icmp6-no-route", code: 0), .init(name: "icmp6-adm-prohibited", code: 1),
        .init(name: "icmp6-addr-unreachable", code: 3), .init(name: "icmp6-port-unreachable", code: 4),
        .init(name: "tcp-reset", code: 6), .init(name: "icmp6-policy-fail", code: 7), .init(name: "icmp6-reject-route", code: 8),
    ]
    /// Aliases iptables accepts on input.
    static let aliases: [String: String] = [
        "net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
        "proto-unreach": "icmp-proto-unreachable", "port-unreach": "icmp-port-unreachable",
        "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited", "admin-prohib": "icmp-admin-prohibited",
        "tcp-rst": "tcp-reset", "icmp-prot-unreachable": "icmp-proto-unreachable",
        "no-route": "icmp6-no-route", "adm-prohibited": "icmp6-adm-prohibited", "addr-unreach": "icmp6-addr-unreachable",
        "icmp6-addr-unreach": "icmp6-addr-unreachable",
    ]
    public static func `default`(_ family: IPFamily) -> RejectType { family == .v4 ? ipv4[3] : ipv6[3] }
    public static func named(_ name: String, family: IPFamily) -> RejectType? {
        let canonical = aliases[name] ?? name
        return (family == .v4 ? ipv4 : ipv6).first { $0.name == canonical }
    }
}

/// NAT mapping flags (`--random`, `--persistent`, `--random-fully`): NF_NAT_RANGE_* bits.
public struct NATFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// NF_NAT_RANGE_PROTO_RANDOM, `--random`.
    public static let random = NATFlags(rawValue: 1 << 2)
    /// NF_NAT_RANGE_PERSISTENT, `--persistent`.
    public static let persistent = NATFlags(rawValue: 1 << 3)
    /// NF_NAT_RANGE_PROTO_RANDOM_FULLY, `--random-fully`.
    public static let randomFully = NATFlags(rawValue: 1 << 4)
}

/// DNAT / SNAT destination: an address range, an optional port range and the mapping flags.
public struct NATRange: Hashable, Sendable {
    public var addresses: AddressRange?
    public var ports: PortRange?
    public var flags: NATFlags
    public init(addresses: AddressRange? = nil, ports: PortRange? = nil, flags: NATFlags = []) {
        self.addresses = addresses; self.ports = ports; self.flags = flags
    }
}

public enum Target: Hashable, Sendable {
    case accept, drop, `return`
    case jump(String)
    case goto(String)
    case reject(RejectType)
    case log(prefix: String, level: UInt8)
    case nflog(group: UInt16, prefix: String, size: UInt32?, threshold: UInt16)
    case dnat(NATRange)
    case snat(NATRange)
    case masquerade(ports: PortRange?, flags: NATFlags = [])
    case redirect(ports: PortRange?, flags: NATFlags = [])
    case mark(value: UInt32, mask: UInt32)
    /// nil = clamp to the path MTU.
    case tcpmss(UInt16?)

    /// Tables where the target is allowed (nil = any); from `RuleContext`'s table.
    public var allowedTables: Set<NetfilterTable>? { RuleContext.targetTables(self) }

    /// The chain a jump or goto leads to.
    public var chain: String? {
        switch self {
        case .jump(let chain), .goto(let chain): return chain
        default: return nil
        }
    }
}

/// One rule: the header selectors, the extension matches and the target.
public struct Rule: Hashable, Sendable {
    public var family: IPFamily
    /// IP protocol number (0 = any).
    public var proto: Negatable<UInt8>?
    public var source: Negatable<IPPrefix>?
    public var destination: Negatable<IPPrefix>?
    public var inInterface: Negatable<String>?
    public var outInterface: Negatable<String>?
    public var matches: [Match]
    public var target: Target
    /// A non-contiguous IPv4/IPv6 netmask for `source` (`-s 10.9.8.7/255.0.255.0`), nil for the usual
    /// case of a prefix length. When set, `source.value.address` is the address already ANDed with
    /// this mask and `source.value.length` is the full width (32/128): a backend must test
    /// `address & sourceMask == source.value.address`, never the length.
    public var sourceMask: IPAddress?
    /// The same for `destination`.
    public var destinationMask: IPAddress?

    public init(family: IPFamily, proto: Negatable<UInt8>? = nil, source: Negatable<IPPrefix>? = nil,
                destination: Negatable<IPPrefix>? = nil, inInterface: Negatable<String>? = nil,
                outInterface: Negatable<String>? = nil, matches: [Match] = [], target: Target,
                sourceMask: IPAddress? = nil, destinationMask: IPAddress? = nil) {
        self.sourceMask = sourceMask
        self.destinationMask = destinationMask
        self.family = family
        self.proto = proto
        self.source = source
        self.destination = destination
        self.inInterface = inInterface
        self.outInterface = outInterface
        self.matches = matches
        self.target = target
    }
}

/// IP protocol names as iptables prints them.
public enum IPProtocol {
    static let names: [(String, UInt8)] = [
        ("tcp", 6), ("udp", 17), ("icmp", 1), ("ipv6-icmp", 58), ("sctp", 132), ("gre", 47), ("esp", 50),
        ("ah", 51), ("udplite", 136), ("dccp", 33), ("ipip", 4), ("igmp", 2),
    ]
    public static func number(_ name: String) -> UInt8? {
        if name == "icmpv6" || name == "icmp6" { return 58 }
        if name == "all" { return 0 }
        return names.first { $0.0 == name.lowercased() }?.1
    }
    public static func name(_ number: UInt8) -> String {
        names.first { $0.1 == number }?.0 ?? String(number)
    }
}
