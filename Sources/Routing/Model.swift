@_exported import NetTypes

/// The kernel's well-known routing tables.
public enum RoutingTable {
    public static let unspec: UInt32 = 0
    public static let compat: UInt32 = 252
    public static let `default`: UInt32 = 253
    public static let main: UInt32 = 254
    public static let local: UInt32 = 255

    /// Table ids a user must not pick for docknfv's own tables.
    public static func reservedName(_ id: UInt32) -> String? {
        switch id {
        case unspec: return "unspec"
        case `default`: return "default"
        case main: return "main"
        case local: return "local"
        default: return nil
        }
    }
}

/// The `rtm_protocol` / `FRA_PROTOCOL` value docknfv stamps on every route and rule it
/// creates. It is how removal recognises what is ours and never touches anything else.
/// (Values below 5 are the kernel's; 8–192 are taken by routing daemons; 0x4e is free.)
public let docknfvRouteProtocol: UInt8 = 0x4e

public enum RouteScope: UInt8, Sendable, Hashable, CustomStringConvertible {
    case universe = 0
    case site = 200
    case link = 253
    case host = 254
    case nowhere = 255

    public var description: String {
        switch self {
        case .universe: return "global"
        case .site: return "site"
        case .link: return "link"
        case .host: return "host"
        case .nowhere: return "nowhere"
        }
    }
}

/// A network interface as the kernel reports it.
public struct Link: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var index: Int32
    /// IFF_UP: administratively up.
    public var isUp: Bool
    /// IFF_LOWER_UP: the link has carrier.
    public var hasCarrier: Bool
    public var mtu: UInt32

    public init(name: String, index: Int32, isUp: Bool, hasCarrier: Bool, mtu: UInt32) {
        self.name = name
        self.index = index
        self.isUp = isUp
        self.hasCarrier = hasCarrier
        self.mtu = mtu
    }

    public var description: String { "\(name) (index \(index), \(isUp ? "up" : "down"), mtu \(mtu))" }
}

/// An address on an interface.
public struct LinkAddress: Sendable, Hashable, CustomStringConvertible {
    public var interface: String
    public var address: InterfaceAddress
    public var scope: RouteScope
    /// IFA_F_TENTATIVE: IPv6 duplicate address detection has not finished.
    public var isTentative: Bool

    public init(interface: String, address: InterfaceAddress, scope: RouteScope = .universe, isTentative: Bool = false) {
        self.interface = interface
        self.address = address
        self.scope = scope
        self.isTentative = isTentative
    }

    public var description: String { "\(address) dev \(interface)" }
}

/// A unicast route. Its identity in the kernel is (family, table, destination, metric);
/// the next hop (gateway and/or device) is what it says.
public struct Route: Sendable, Hashable, CustomStringConvertible {
    public var table: UInt32
    public var destination: IPPrefix
    public var gateway: IPAddress?
    public var interface: String?
    /// Kernel priority. `nil` means the kernel default (0 for IPv4, 1024 for IPv6).
    public var metric: UInt32?
    public var scope: RouteScope
    public var `protocol`: UInt8

    public init(table: UInt32, destination: IPPrefix, gateway: IPAddress? = nil, interface: String? = nil,
                metric: UInt32? = nil, scope: RouteScope? = nil, protocol: UInt8 = docknfvRouteProtocol) {
        self.table = table
        self.destination = destination
        self.gateway = gateway
        self.interface = interface
        self.metric = metric
        self.scope = scope ?? (gateway == nil ? .link : .universe)
        self.protocol = `protocol`
    }

    public var family: IPFamily { destination.family }
    /// The metric the kernel will actually hold.
    public var effectiveMetric: UInt32 { metric ?? (family == .v6 ? 1024 : 0) }

    /// Same kernel identity: adding one while the other exists collides.
    public func sameSlot(as other: Route) -> Bool {
        table == other.table && destination.network == other.destination.network
            && effectiveMetric == other.effectiveMetric
    }

    /// Same slot and same next hop: the route we want is already there.
    public func sameEffect(as other: Route) -> Bool {
        sameSlot(as: other) && gateway == other.gateway
            && (interface == nil || other.interface == nil || interface == other.interface)
    }

    public var description: String {
        var text = destination.isDefault ? "default" : destination.network.description
        if family == .v6 && destination.isDefault { text = "default (ipv6)" }
        if let gateway { text += " via \(gateway)" }
        if let interface { text += " dev \(interface)" }
        text += " table \(tableName(table))"
        if let metric { text += " metric \(metric)" }
        return text
    }
}

/// An `ip rule` that looks up a table.
public struct PolicyRule: Sendable, Hashable, CustomStringConvertible {
    public var family: IPFamily
    public var priority: UInt32
    public var table: UInt32
    public var inputInterface: String?
    public var outputInterface: String?
    public var from: IPPrefix?
    public var to: IPPrefix?
    public var fwmark: UInt32?
    public var fwmask: UInt32?
    public var `protocol`: UInt8

    public init(family: IPFamily, priority: UInt32, table: UInt32, inputInterface: String? = nil,
                outputInterface: String? = nil, from: IPPrefix? = nil, to: IPPrefix? = nil,
                fwmark: UInt32? = nil, fwmask: UInt32? = nil, protocol: UInt8 = docknfvRouteProtocol) {
        self.family = family
        self.priority = priority
        self.table = table
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
        self.from = from
        self.to = to
        self.fwmark = fwmark
        self.fwmask = fwmask
        self.protocol = `protocol`
    }

    /// The same selector, priority and table: the kernel would hold it twice.
    public func sameEffect(as other: PolicyRule) -> Bool {
        family == other.family && priority == other.priority && table == other.table
            && inputInterface == other.inputInterface && outputInterface == other.outputInterface
            && from?.network == other.from?.network && to?.network == other.to?.network
            && (fwmark ?? 0) == (other.fwmark ?? 0)
            && ((fwmark ?? 0) == 0 || (fwmask ?? 0xffff_ffff) == (other.fwmask ?? 0xffff_ffff))
    }

    public var description: String {
        var text = "\(family) rule \(priority):"
        if let from { text += " from \(from.network)" } else { text += " from all" }
        if let to { text += " to \(to.network)" }
        if let inputInterface { text += " iif \(inputInterface)" }
        if let outputInterface { text += " oif \(outputInterface)" }
        if let fwmark {
            text += " fwmark 0x\(String(fwmark, radix: 16))"
            if let fwmask { text += "/0x\(String(fwmask, radix: 16))" }
        }
        return text + " lookup \(tableName(table))"
    }
}

func tableName(_ id: UInt32) -> String {
    RoutingTable.reservedName(id) ?? String(id)
}
