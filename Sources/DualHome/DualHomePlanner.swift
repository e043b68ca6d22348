import Routing

/// What the planner knows about one interface, read from the kernel beforehand.
public struct ObservedInterface: Sendable, Equatable {
    public var name: String
    public var addresses: [InterfaceAddress]
    /// Next hops of default routes the network already installed via this interface
    /// (DHCP, the container runtime), in preference order.
    public var discoveredGateways: [IPAddress]

    public init(name: String, addresses: [InterfaceAddress], discoveredGateways: [IPAddress] = []) {
        self.name = name
        self.addresses = addresses
        self.discoveredGateways = discoveredGateways
    }

    /// Addresses that define routable subnets (IPv6 link-local excluded).
    var routableAddresses: [InterfaceAddress] { addresses.filter { !$0.address.isIPv6LinkLocal } }
}

/// A sysctl value the plan wants.
public struct SysctlSetting: Sendable, Hashable, CustomStringConvertible {
    public var key: Sysctl
    public var value: String
    public init(_ key: Sysctl, _ value: String) { self.key = key; self.value = value }
    public var description: String { "\(key) = \(value)" }
}

/// A route the plan wants; `replace` marks the one route that may take over a foreign slot
/// (the VPN-mode default route in the main table).
public struct PlannedRoute: Sendable, Hashable {
    public var route: Route
    public var replace: Bool
    public init(_ route: Route, replace: Bool = false) { self.route = route; self.replace = replace }
}

/// The desired kernel state, in the order it is applied: routes, then rules (so no rule ever
/// points at an empty table), then sysctls.
public struct DualHomePlan: Sendable, Equatable {
    public var routes: [PlannedRoute]
    public var rules: [PolicyRule]
    public var sysctls: [SysctlSetting]

    public init(routes: [PlannedRoute] = [], rules: [PolicyRule] = [], sysctls: [SysctlSetting] = []) {
        self.routes = routes
        self.rules = rules
        self.sysctls = sysctls
    }

    /// One line per object, for logs and the demo.
    public var summary: [String] {
        routes.map { "route \($0.route)" } + rules.map { "rule \($0)" } + sysctls.map { "sysctl \($0)" }
    }
}

/// Pure planning: configuration + observed interfaces → desired routes, rules and sysctls.
public enum DualHomePlanner {
    public static func plan(_ config: DualHomeConfig, left: ObservedInterface, right: ObservedInterface) throws(DualHomeError) -> DualHomePlan {
        try config.validate()
        switch config.mode {
        case .route: return try planRoute(config, left: left, right: right)
        case .vpn: return try planVPN(config, right: right)
        }
    }

    /// The gateway per family a side will use: configured (validated against the interface's
    /// subnets) or else discovered.
    static func gateways(side: String, config: SideConfig, observed: ObservedInterface) throws(DualHomeError) -> [IPFamily: IPAddress] {
        var out: [IPFamily: IPAddress] = [:]
        for gateway in config.gateways {
            let onLink = gateway.isIPv6LinkLocal
                || observed.routableAddresses.contains { $0.subnet.contains(gateway) && $0.address != gateway }
            if !onLink {
                let subnets = observed.routableAddresses.filter { $0.family == gateway.family }.map(\.description)
                throw .invalidField(field: "\(side).gateway", value: gateway.description,
                                    reason: "not inside any subnet of \(observed.name)"
                                        + (subnets.isEmpty ? " (it has no \(gateway.family) address)" : " (\(subnets.joined(separator: ", ")))"))
            }
            out[gateway.family] = gateway
        }
        for gateway in observed.discoveredGateways where out[gateway.family] == nil {
            out[gateway.family] = gateway
        }
        return out
    }

    static func planRoute(_ config: DualHomeConfig, left: ObservedInterface, right: ObservedInterface) throws(DualHomeError) -> DualHomePlan {
        var plan = DualHomePlan()
        let sides: [(name: String, config: SideConfig, observed: ObservedInterface)] = [
            ("left", config.left, left), ("right", config.right, right),
        ]
        var tableFamilies: [UInt32: Set<IPFamily>] = [:]
        for side in sides {
            if side.observed.routableAddresses.isEmpty {
                throw .noAddress(side: side.name, interface: side.config.interface)
            }
            let gateways = try gateways(side: side.name, config: side.config, observed: side.observed)
            if gateways.isEmpty { throw .noGateway(side: side.name, interface: side.config.interface) }
            // Connected routes first: replies to hosts on this side's subnets go out directly.
            var seen = Set<IPPrefix>()
            for address in side.observed.routableAddresses.sorted(by: { $0.address < $1.address })
            where seen.insert(address.subnet).inserted {
                plan.routes.append(PlannedRoute(Route(table: side.config.table, destination: address.subnet,
                                                      interface: side.config.interface, scope: .link)))
                tableFamilies[side.config.table, default: []].insert(address.family)
            }
            for family in IPFamily.allCases {
                guard let gateway = gateways[family] else { continue }
                plan.routes.append(PlannedRoute(Route(table: side.config.table, destination: .default(family),
                                                      gateway: gateway, interface: side.config.interface)))
                tableFamilies[side.config.table, default: []].insert(family)
            }
        }
        // Cross the tables: what enters left is looked up in RIGHT, and the reverse. A family gets
        // its rule only where the target table holds routes of that family.
        for family in IPFamily.allCases {
            for (from, to) in [(config.left, config.right), (config.right, config.left)]
            where tableFamilies[to.table]?.contains(family) == true {
                plan.rules.append(PolicyRule(family: family, priority: config.rulePriority, table: to.table,
                                             inputInterface: from.interface))
            }
        }
        let families = Set(plan.rules.map(\.family))
        if families.contains(.v4) {
            plan.sysctls.append(SysctlSetting(.ipv4Forwarding, "1"))
            // Strict reverse-path filtering would drop every crossing packet: the reverse lookup of
            // a left source goes through table RIGHT and points out the right side. Loose mode only
            // asks that some route to the source exists.
            plan.sysctls.append(SysctlSetting(.rpFilter(config.left.interface), "2"))
            plan.sysctls.append(SysctlSetting(.rpFilter(config.right.interface), "2"))
        }
        if families.contains(.v6) {
            plan.sysctls.append(SysctlSetting(.ipv6ForwardingAll, "1"))
        }
        return plan
    }

    static func planVPN(_ config: DualHomeConfig, right: ObservedInterface) throws(DualHomeError) -> DualHomePlan {
        var plan = DualHomePlan()
        if right.routableAddresses.isEmpty { throw .noAddress(side: "right", interface: config.right.interface) }
        let gateways = try gateways(side: "right", config: config.right, observed: right)
        if gateways.isEmpty { throw .noGateway(side: "right", interface: config.right.interface) }
        for family in IPFamily.allCases {
            guard let gateway = gateways[family] else { continue }
            plan.routes.append(PlannedRoute(Route(table: RoutingTable.main, destination: .default(family),
                                                  gateway: gateway, interface: config.right.interface), replace: true))
            plan.sysctls.append(family == .v4 ? SysctlSetting(.ipv4Forwarding, "1") : SysctlSetting(.ipv6ForwardingAll, "1"))
        }
        return plan
    }
}
