import NetTypes

/// What dhclient's `reason` asks the hook to do.
public enum HookAction: Sendable, Equatable {
    /// A lease is (newly) in force: publish its routes.
    case publish
    /// The lease is gone: withdraw what was published.
    case withdraw
    /// Nothing for this hook (IPv6 events, pre-init, ARP checks…).
    case ignore
}

public enum DHCPReason {
    public static let publish: Set<String> = ["BOUND", "RENEW", "REBIND", "REBOOT"]
    public static let withdraw: Set<String> = ["EXPIRE", "FAIL", "RELEASE", "STOP"]
    /// Reasons dhclient-script knows that carry no IPv4 lease change for this hook.
    public static let ignore: Set<String> = [
        "PREINIT", "PREINIT6", "MEDIUM", "ARPCHECK", "ARPSEND", "TIMEOUT", "NBI",
        "BOUND6", "RENEW6", "REBIND6", "DEPREF6", "EXPIRE6", "RELEASE6", "STOP6",
    ]

    /// nil for a reason dhclient never sends.
    public static func action(for reason: String) -> HookAction? {
        if publish.contains(reason) { return .publish }
        if withdraw.contains(reason) { return .withdraw }
        if ignore.contains(reason) { return .ignore }
        return nil
    }
}

/// Where the routes of a lease came from.
public enum RouteSource: String, Sendable, Equatable {
    case rfc3442 = "option 121"
    case microsoft = "option 249"
    case none = "no classless routes"
}

/// The classless routes of a lease, read from dhclient's environment: option 121, or option 249 as
/// a fallback when 121 is absent (RFC 3442 clients ignore 249 when 121 is present).
public struct LeaseRoutes: Sendable, Equatable {
    public var routes: [ClasslessRoute]
    public var source: RouteSource
    public var warnings: [String]

    /// dhclient's variables for the lease's classless routes, in the order they are tried.
    public static func variables(prefix: String = "new_") -> [(name: String, source: RouteSource)] {
        [("\(prefix)rfc3442_classless_static_routes", .rfc3442), ("\(prefix)ms_classless_static_routes", .microsoft)]
    }

    public static func from(environment env: [String: String], prefix: String = "new_") throws(LeaseError) -> LeaseRoutes {
        for (variable, source) in variables(prefix: prefix) {
            guard let text = env[variable], !text.trimming(" \t\n").isEmpty else { continue }
            do {
                let decoded = try ClasslessRouteDecoder.decode(text)
                return LeaseRoutes(routes: decoded.routes, source: source, warnings: decoded.warnings)
            } catch {
                throw .invalid(variable: variable, error: error)
            }
        }
        return LeaseRoutes(routes: [], source: .none, warnings: [])
    }
}

public enum LeaseError: Error, Equatable, CustomStringConvertible {
    case invalid(variable: String, error: ClasslessRouteError)
    public var description: String {
        switch self {
        case .invalid(let variable, let error): return "\(variable): \(error)"
        }
    }
}

/// Renders the OpenVPN server include file: one `push "route NETWORK NETMASK"` per route; the
/// default route is never pushed as a route, but as `push "redirect-gateway def1"` when enabled.
/// The output is deterministic (no timestamps), so unchanged routes give an unchanged file.
public enum OpenVPNPushConfig {
    public static func render(routes: [ClasslessRoute], redirectGateway: Bool, interface: String, source: RouteSource) -> String {
        var lines = ["# Written by docknfv-dhcp-hook from DHCP \(source.rawValue) on \(interface). Do not edit: it is replaced on every lease change."]
        var hasDefault = false
        for route in routes {
            if route.destination.isDefault { hasDefault = true; continue }
            lines.append("push \"route \(route.destination.network.address) \(route.destination.ipv4Netmask!)\"")
        }
        if hasDefault && redirectGateway { lines.append("push \"redirect-gateway def1\"") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The content written when the lease is withdrawn: nothing pushed.
    public static func empty(interface: String, reason: String) -> String {
        "# Written by docknfv-dhcp-hook: no DHCP lease on \(interface) (\(reason)); nothing is pushed.\n"
    }
}
