import RuleEngine

/// One port mapping: traffic to the host's `hostPort` (on `hostIP`, or any local address) goes to
/// the container's `containerPort`.
public struct PortMapping: Sendable, Hashable, CustomStringConvertible {
    public enum Proto: String, Sendable, Hashable, CaseIterable { case tcp, udp }
    public var hostPort: UInt16
    public var containerPort: UInt16
    public var proto: Proto
    public var hostIP: IPAddress?

    public init(hostPort: UInt16, containerPort: UInt16, proto: Proto = .tcp, hostIP: IPAddress? = nil) {
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.proto = proto
        self.hostIP = hostIP
    }

    public var description: String { "\(hostIP.map { "\($0):" } ?? "")\(hostPort)/\(proto.rawValue) → \(containerPort)" }
}

/// Host-side DNAT for one attachment's port mappings, as rules in iptables syntax:
/// - nat PREROUTING and OUTPUT jump to `HOSTPORTS` only for packets addressed to one of the
///   host's own addresses (`-m addrtype --dst-type LOCAL`, nftables `fib daddr type local`), so a
///   mapping never captures traffic that merely passes through the host;
/// - `HOSTPORTS` DNATs each mapping to the container's address of the same family;
/// - POSTROUTING masquerades what was DNATed and comes from the container's own subnet (hairpin:
///   a container reaching itself or a neighbour through the host), and, with `localhost`, what
///   comes from 127.0.0.0/8 (the host's own `localhost:hostPort`; needs `route_localnet` on the
///   host-side interface, which the caller sets).
public enum PortMapPlanner {
    public static let chain = "HOSTPORTS"

    public struct Options: Sendable, Equatable {
        public var hairpinSNAT: Bool
        public var localhost: Bool
        public init(hairpinSNAT: Bool = true, localhost: Bool = false) { self.hairpinSNAT = hairpinSNAT; self.localhost = localhost }
    }

    public static func plan(_ mappings: [PortMapping], container addresses: [InterfaceAddress], options: Options = Options(),
                            into builder: inout RulesetBuilder) throws {
        guard !mappings.isEmpty else { return }
        for family in IPFamily.allCases {
            let mine = addresses.filter { $0.family == family }
            guard let address = mine.first else { continue }
            let relevant = mappings.filter { $0.hostIP == nil || $0.hostIP!.family == family }
            guard !relevant.isEmpty else { continue }
            builder.chain(family, .nat, chain)
            for hook in ["PREROUTING", "OUTPUT"] {
                try builder.append(family, .nat, hook, "-m addrtype --dst-type LOCAL -j \(chain)")
            }
            for mapping in relevant {
                let destination = family == .v4 ? "\(address.address):\(mapping.containerPort)" : "[\(address.address)]:\(mapping.containerPort)"
                let hostIP = mapping.hostIP.map { "-d \($0) " } ?? ""
                try builder.append(family, .nat, chain,
                                   "\(hostIP)-p \(mapping.proto.rawValue) -m \(mapping.proto.rawValue) --dport \(mapping.hostPort) -j DNAT --to-destination \(destination)")
            }
            // One masquerade rule per (protocol, container port): several host ports may share it.
            var seen = Set<String>()
            for mapping in relevant where seen.insert("\(mapping.proto.rawValue)/\(mapping.containerPort)").inserted {
                let match = "-d \(address.address) -p \(mapping.proto.rawValue) -m \(mapping.proto.rawValue) --dport \(mapping.containerPort)"
                if options.hairpinSNAT {
                    for subnet in Set(mine.map { $0.subnet }).sorted() {
                        try builder.append(family, .nat, "POSTROUTING", "-s \(subnet) \(match) -m conntrack --ctstate DNAT -j MASQUERADE")
                    }
                }
                if options.localhost && family == .v4 {
                    try builder.append(family, .nat, "POSTROUTING", "-s 127.0.0.0/8 \(match) -m conntrack --ctstate DNAT -j MASQUERADE")
                }
            }
        }
    }
}
