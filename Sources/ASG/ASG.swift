import RuleEngine

/// One application security group rule, as Cloud Foundry passes it in `netOutRules`.
public struct EgressRule: Sendable, Equatable {
    public enum Proto: Sendable, Equatable {
        case all, tcp, udp, icmp
        /// Any other IP protocol, by number.
        case number(UInt8)
    }

    public struct Range: Sendable, Equatable {
        public var start: IPAddress
        public var end: IPAddress
        public init(start: IPAddress, end: IPAddress) { self.start = start; self.end = end }
    }

    public var proto: Proto
    public var networks: [Range]
    /// Destination port ranges (tcp and udp); empty = every port.
    public var ports: [ClosedRange<UInt16>]
    /// ICMP type and code; nil = any (Cloud Foundry writes -1).
    public var icmpType: UInt8?
    public var icmpCode: UInt8?
    /// Log the connections this rule allows.
    public var log: Bool

    public init(proto: Proto, networks: [Range] = [], ports: [ClosedRange<UInt16>] = [], icmpType: UInt8? = nil, icmpCode: UInt8? = nil, log: Bool = false) {
        self.proto = proto
        self.networks = networks
        self.ports = ports
        self.icmpType = icmpType
        self.icmpCode = icmpCode
        self.log = log
    }
}

/// Egress allow-lists for one container: traffic the host forwards from the container's addresses
/// goes through the container's `ASG` chain, which accepts replies, rejects the deny networks,
/// accepts what the rules allow and rejects (or drops) the rest, optionally logging it at a
/// limited rate. A rule with many networks matches one set instead of one rule per network.
public enum ASGPlanner {
    public static let chain = "ASG"

    public struct Options: Sendable, Equatable {
        public enum Action: String, Sendable, Equatable { case reject, drop }
        public var denyNetworks: [IPPrefix]
        public var defaultAction: Action
        public var logDenied: Bool
        /// A rule with more networks than this matches a set.
        public var setThreshold: Int
        /// Log prefixes name the container (at most 20 characters of this tag).
        public var logTag: String
        /// Prefix of the set names (unique per attachment: ipsets are global on a host).
        public var setPrefix: String

        public init(denyNetworks: [IPPrefix] = [], defaultAction: Action = .reject, logDenied: Bool = false, setThreshold: Int = 4,
                    logTag: String = "", setPrefix: String = "asg") {
            self.denyNetworks = denyNetworks
            self.defaultAction = defaultAction
            self.logDenied = logDenied
            self.setThreshold = setThreshold
            self.logTag = logTag
            self.setPrefix = setPrefix
        }
    }

    public static func plan(_ rules: [EgressRule], container addresses: [InterfaceAddress], options: Options, into builder: inout RulesetBuilder) throws {
        let tag = String(options.logTag.prefix(20))
        var setIndex = 0
        for family in IPFamily.allCases {
            let mine = addresses.filter { $0.family == family }.map(\.address)
            guard !mine.isEmpty else { continue }
            builder.chain(family, .filter, chain)
            for address in Set(mine).sorted() { try builder.append(family, .filter, "FORWARD", "-s \(address) -j \(chain)") }
            let reject = options.defaultAction == .drop ? "-j DROP"
                : "-j REJECT --reject-with \(family == .v4 ? "icmp-port-unreachable" : "icmp6-port-unreachable")"
            try builder.append(family, .filter, chain, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
            for network in options.denyNetworks where network.family == family {
                try builder.append(family, .filter, chain, "-d \(network) \(reject)")
            }
            for group in groups(rules, family: family) {
                let rule = group.rule, networks = group.networks
                var destinations: [String] = networks.map { range in
                    range.start == range.end ? "-d \(range.start)" : "-m iprange --dst-range \(range.start)-\(range.end)"
                }
                if networks.count > options.setThreshold {
                    let name = "\(options.setPrefix)\(setIndex)"
                    setIndex += 1
                    let entries = networks.flatMap { AddressRanges.prefixes(from: $0.start, to: $0.end) }
                        .map { SetEntry(address: $0.address, prefixLength: $0.isHost ? nil : $0.length) }
                    builder.set(name, SetSpec(type: .hashNet, family: family, entries: entries))
                    destinations = ["-m set --match-set \(name) dst"]
                }
                if destinations.isEmpty { destinations = [""] }
                for destination in destinations {
                    for match in protocolMatches(rule) {
                        let head = [destination, match].filter { !$0.isEmpty }.joined(separator: " ")
                        if rule.log {
                            try builder.append(family, .filter, chain,
                                               "\(head) -m conntrack --ctstate NEW -j LOG --log-prefix \"OK_\(tag) \"".trimmingLeadingSpace)
                        }
                        try builder.append(family, .filter, chain, "\(head) -j ACCEPT".trimmingLeadingSpace)
                    }
                }
            }
            if options.logDenied {
                try builder.append(family, .filter, chain, "-m limit --limit 2/sec --limit-burst 2 -j LOG --log-prefix \"DENY_\(tag) \"")
            }
            try builder.append(family, .filter, chain, reject)
        }
    }

    /// The rules that apply to `family`, consecutive rules that differ only in their networks
    /// merged into one (every rule accepts, so a merge changes nothing but the order in which two
    /// rules of the same shape are tried; only consecutive ones merge, so a logging rule stays
    /// where it was among the others). A thousand ASG rules to different networks on the same
    /// port become one rule and one set.
    static func groups(_ rules: [EgressRule], family: IPFamily) -> [(rule: EgressRule, networks: [EgressRule.Range])] {
        var out: [(rule: EgressRule, networks: [EgressRule.Range])] = []
        for rule in rules {
            if rule.proto == .icmp && family == .v6 { continue } // Cloud Foundry's ICMP is IPv4's
            let networks = rule.networks.filter { $0.start.family == family }
            if !rule.networks.isEmpty && networks.isEmpty { continue }
            var shape = rule
            shape.networks = []
            if !networks.isEmpty, let last = out.last, !last.networks.isEmpty, last.rule == shape {
                out[out.count - 1].networks += networks
            } else {
                out.append((shape, networks))
            }
        }
        return out
    }

    /// The protocol part of a rule: one text per group of at most 15 port values (multiport's limit).
    static func protocolMatches(_ rule: EgressRule) -> [String] {
        switch rule.proto {
        case .all: return [""]
        case .icmp:
            guard let type = rule.icmpType else { return ["-p icmp"] }
            return ["-p icmp -m icmp --icmp-type \(type)\(rule.icmpCode.map { "/\($0)" } ?? "")"]
        case .number(let number): return ["-p \(number)"]
        case .tcp, .udp:
            let name = rule.proto == .tcp ? "tcp" : "udp"
            if rule.ports.isEmpty { return ["-p \(name)"] }
            if rule.ports.count == 1 { return ["-p \(name) -m \(name) --dport \(text(rule.ports[0]))"] }
            var groups: [[ClosedRange<UInt16>]] = [[]], weight = 0
            for range in rule.ports {
                let cost = range.count == 1 ? 1 : 2
                if weight + cost > 15 { groups.append([]); weight = 0 }
                groups[groups.count - 1].append(range)
                weight += cost
            }
            return groups.map { "-p \(name) -m multiport --dports \($0.map(text).joined(separator: ","))" }
        }
    }

    static func text(_ range: ClosedRange<UInt16>) -> String {
        range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound):\(range.upperBound)"
    }
}

/// Address ranges as the fewest prefixes that cover exactly them.
public enum AddressRanges {
    public static func prefixes(from start: IPAddress, to end: IPAddress) -> [IPPrefix] {
        guard start.family == end.family else { return [] }
        let bits = start.family.bitCount
        var low = value(start), high = value(end)
        if low > high { swap(&low, &high) }
        var out: [IPPrefix] = []
        while true {
            // The largest aligned block starting at `low` that does not pass `high`.
            var size = low == 0 ? bits : min(low.trailingZeroBitCount, bits)
            while size > 0 && (size == 128 ? high != UInt128.max : low + ((UInt128(1) << size) - 1) > high) { size -= 1 }
            if size == 128 { return [IPPrefix.default(start.family)] }
            out.append(IPPrefix(address: address(low, family: start.family), length: bits - size)!)
            let last = low + ((UInt128(1) << size) - 1)
            if last >= high { return out }
            let next = last + 1
            low = next
        }
    }

    static func value(_ address: IPAddress) -> UInt128 { address.bytes.reduce(UInt128(0)) { ($0 << 8) | UInt128($1) } }

    static func address(_ value: UInt128, family: IPFamily) -> IPAddress {
        let count = family.byteCount
        return IPAddress(family: family, bytes: (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * (count - 1 - $0))) })!
    }
}

extension String {
    var trimmingLeadingSpace: String { String(drop { $0 == " " }) }
}
