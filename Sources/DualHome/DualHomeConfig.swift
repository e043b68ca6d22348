import Routing

/// How the VNF routes between its two sides.
public enum DualHomeMode: String, Sendable, Equatable, CaseIterable {
    /// dockwall: tables LEFT and RIGHT crossed by `iif` rules; traffic in one side leaves by the other.
    case route
    /// dockvpn: only a default route on the right side (main table); the left side's routes come
    /// from DHCP option 121 and are pushed to VPN clients.
    case vpn
}

/// One side (left or right) of the VNF.
public struct SideConfig: Sendable, Equatable {
    public var interface: String
    /// Configured gateways, at most one per family. Empty = use what the network gave the interface.
    public var gateways: [IPAddress]
    public var table: UInt32

    public init(interface: String, gateways: [IPAddress] = [], table: UInt32) {
        self.interface = interface
        self.gateways = gateways
        self.table = table
    }

    public func gateway(_ family: IPFamily) -> IPAddress? { gateways.first { $0.family == family } }
}

/// Everything the dual-home planner needs from configuration. Defaults match dockwall:
/// left `eth1`, right `eth0`, tables 101 and 102.
public struct DualHomeConfig: Sendable, Equatable {
    public var mode: DualHomeMode
    public var left: SideConfig
    public var right: SideConfig
    /// Priority of the two `iif` rules; must sort before the main-table rule (32766).
    public var rulePriority: UInt32

    public static let defaultLeftInterface = "eth1"
    public static let defaultRightInterface = "eth0"
    public static let defaultLeftTable: UInt32 = 101
    public static let defaultRightTable: UInt32 = 102
    public static let defaultRulePriority: UInt32 = 100

    public init(mode: DualHomeMode = .route,
                left: SideConfig = SideConfig(interface: defaultLeftInterface, table: defaultLeftTable),
                right: SideConfig = SideConfig(interface: defaultRightInterface, table: defaultRightTable),
                rulePriority: UInt32 = defaultRulePriority) {
        self.mode = mode
        self.left = left
        self.right = right
        self.rulePriority = rulePriority
    }

    /// Checks what can be checked without looking at the kernel.
    public func validate() throws(DualHomeError) {
        for (field, name) in [("left.interface", left.interface), ("right.interface", right.interface)] {
            try Self.validateInterfaceName(name, field: field)
        }
        if left.interface == right.interface {
            throw .invalidField(field: "right.interface", value: right.interface,
                                reason: "left and right must be different interfaces")
        }
        for (field, side) in [("left", left), ("right", right)] {
            if let name = RoutingTable.reservedName(side.table) {
                throw .invalidField(field: "\(field).table", value: String(side.table),
                                    reason: "table \(side.table) is the kernel's reserved \"\(name)\" table")
            }
            for family in IPFamily.allCases where side.gateways.filter({ $0.family == family }).count > 1 {
                throw .invalidField(field: "\(field).gateway", value: side.gateways.map(\.description).joined(separator: ","),
                                    reason: "at most one \(family) gateway per side")
            }
        }
        if mode == .route && left.table == right.table {
            throw .invalidField(field: "right.table", value: String(right.table),
                                reason: "left and right tables must differ")
        }
        if rulePriority == 0 || rulePriority >= 32766 {
            throw .invalidField(field: "rulePriority", value: String(rulePriority),
                                reason: "must be between 1 and 32765 (0 is the local rule, 32766 the main rule)")
        }
    }

    /// Linux interface names: 1–15 bytes, no '/', ':' or whitespace, not "." or "..".
    public static func validateInterfaceName(_ name: String, field: String) throws(DualHomeError) {
        let bytes = Array(name.utf8)
        let bad = bytes.isEmpty || bytes.count > 15 || name == "." || name == ".."
            || bytes.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7f }
        if bad {
            throw .invalidField(field: field, value: name,
                                reason: "not a valid interface name (1-15 characters, no '/', ':' or spaces)")
        }
    }
}

/// Errors of the dual-home module. Each names the configuration field or kernel object concerned.
public enum DualHomeError: Error, Equatable, CustomStringConvertible {
    case invalidField(field: String, value: String, reason: String)
    /// A side has no gateway: none configured and none given by the network.
    case noGateway(side: String, interface: String)
    /// An interface has no usable address.
    case noAddress(side: String, interface: String)
    /// A kernel step failed; what this run had applied was rolled back (or the listed undo steps failed).
    case applyFailed(step: String, cause: String, rollbackFailures: [String])
    /// /proc/sys is read-only (a container engine mounted it so) and these sysctls are not as the
    /// plan needs; `flags` are the `--sysctl` options that set them when the container starts.
    case sysctlsNotSet([String], flags: [String], rollbackFailures: [String])

    public var description: String {
        switch self {
        case .invalidField(let field, let value, let reason):
            return "\(field) = \"\(value)\": \(reason)"
        case .noGateway(let side, let interface):
            return "\(side).gateway: no gateway configured for \(interface) and the network gave it none "
                + "(no default route via \(interface)); set \(side).gateway or DOCKNFV_\(side.uppercased())_GW"
        case .noAddress(let side, let interface):
            return "\(side).interface \(interface) has no IPv4 or global IPv6 address"
        case .applyFailed(let step, let cause, let failures):
            var text = "applying the dual-home plan failed at \(step): \(cause)"
            text += failures.isEmpty ? "; everything this run applied was rolled back"
                : "; rollback also failed for: " + failures.joined(separator: "; ")
            return text
        case .sysctlsNotSet(let settings, let flags, let failures):
            var text = "/proc/sys is read-only here (container engines mount it so) and "
                + settings.joined(separator: ", ") + "; start the container with " + flags.joined(separator: " ")
            if !failures.isEmpty { text += "; rollback also failed for: " + failures.joined(separator: "; ") }
            return text
        }
    }
}
