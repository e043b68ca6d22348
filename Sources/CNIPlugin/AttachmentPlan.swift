import ASG
import CNI
import NetTypes
import DualHome
import PortMap
import RuleEngine
import Routing
import RuleState

/// One attachment's identity on this host: (network name, container ID, interface). Every object
/// docknfv makes for it is named from `key`, so DEL and GC find exactly its objects.
public struct Attachment: Sendable, Equatable {
    public var network: String
    public var id: AttachmentID

    public init(network: String, id: AttachmentID) { self.network = network; self.id = id }

    /// 8 hex digits of the network, then 12 of the attachment: tables of one network share a
    /// prefix (GC of one network never looks at another's).
    public var key: String { Self.hex(Self.fnv(network), 8) + "-" + Self.hex(Self.fnv("\(network)\u{0}\(id.containerID)\u{0}\(id.ifname)"), 12) }

    /// The rule engine's owner: nftables tables `docknfv-cni-<key>`, x_tables chains of its own.
    public var owner: Owner { try! Owner("cni-" + key) } // swiftlint:disable:this force_try — the key is hex and a dash

    static func fnv(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    static func hex(_ value: UInt64, _ digits: Int) -> String {
        let text = String(value, radix: 16)
        return String((String(repeating: "0", count: max(0, 16 - text.count)) + text).suffix(digits))
    }
}

/// What one attachment wants, planned from config, prevResult and what was observed; no effects.
public struct AttachmentPlan: Sendable {
    /// Host rules: port mappings, ASGs, outbound.
    public var host: Ruleset
    /// Rules in the container's namespace: firewall, redirection, MSS clamping.
    public var container: Ruleset
    /// This side's routing table, its `iif` rule and sysctls (nil without `side`).
    public var dualHome: DualHomePlan?
    public var mtu: UInt32?
    /// Host interfaces that need `route_localnet` (port mappings reachable from localhost).
    public var localnetInterfaces: [String] = []
}

/// What the planner needs to know besides the config.
public struct PlanInputs: Sendable {
    public var attachment: Attachment
    public var addresses: [InterfaceAddress]
    /// Gateways per family: configured, else prevResult's, else the container's default routes.
    public var gateways: [IPAddress]
    /// Host-side interfaces from prevResult (the bridge first).
    public var hostInterfaces: [String]
    /// CNI_ARGS.
    public var args: [(String, String)]
    /// `$VAR` values for firewall rules: the runtime's environment, CNI_IFNAME, CNI_ARGS' keys.
    public var environment: [String: String]
    /// Contents of `firewall.fwFiles`, in order.
    public var firewallFiles: [String]
    public var uplinkMTU: UInt32?

    public init(attachment: Attachment, addresses: [InterfaceAddress], gateways: [IPAddress], hostInterfaces: [String] = [],
                args: [(String, String)] = [], environment: [String: String] = [:], firewallFiles: [String] = [], uplinkMTU: UInt32? = nil) {
        self.attachment = attachment
        self.addresses = addresses
        self.gateways = gateways
        self.hostInterfaces = hostInterfaces
        self.args = args
        self.environment = environment
        self.firewallFiles = firewallFiles
        self.uplinkMTU = uplinkMTU
    }
}

/// The CNI_ARGS keys docknfv reads (every key is also a `$VAR` for firewall rules).
public enum CNIArgKey: String, CaseIterable, Sendable {
    /// `DOCKNFV_REDIRECT=false` (or 0, no, off, disabled): no redirection for this container.
    case redirect = "DOCKNFV_REDIRECT"
    /// Kubernetes' pod namespace: no redirection when it is one of `redirect.excludeNamespaces`.
    case podNamespace = "K8S_POD_NAMESPACE"

    static let redirectOff: Set<String> = ["false", "0", "no", "off", "disabled"]
}

public enum AttachmentPlanner {
    public static func plan(_ config: PluginConfig, _ inputs: PlanInputs) throws(CNIError) -> AttachmentPlan {
        let owner = inputs.attachment.owner
        let addresses = inputs.addresses.filter { !$0.address.isLinkLocal }
        var host = RulesetBuilder(owner: owner)
        var container = RulesetBuilder(owner: owner)
        do {
            if let outbound = config.outbound { try planOutbound(outbound, addresses: addresses, into: &host) }
            if let rules = config.netOutRules {
                var options = config.asgOptions
                options.logTag = String(inputs.attachment.id.containerID.prefix(20))
                options.setPrefix = "d" + inputs.attachment.key.suffix(12) + "a"
                try ASGPlanner.plan(rules, container: addresses, options: options, into: &host)
            }
            try PortMapPlanner.plan(config.portMappings, container: addresses, options: config.portMapOptions, into: &host)
        } catch let error as CNIError { throw error } catch {
            throw CNIError(CNIError.invalidConfig, "invalid network configuration", details: "\(error)")
        }
        if let firewall = config.firewall { try planFirewall(firewall, inputs: inputs, into: &container) }
        if let redirect = config.redirect { try planRedirect(redirect, inputs: inputs, addresses: addresses, into: &container) }
        if config.mssClamp {
            for family in Set(addresses.map(\.family)).sorted(by: { $0 == .v4 && $1 == .v6 }) {
                try engine("mssClamp") { try container.append(family, .mangle, "FORWARD", "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu") }
            }
        }
        var plan = AttachmentPlan(host: host.ruleset, container: container.ruleset)
        if let side = config.side { plan.dualHome = try planSide(side, config: config, inputs: inputs, addresses: addresses) }
        switch config.mtu {
        case .fixed(let value): plan.mtu = value
        case .auto: plan.mtu = inputs.uplinkMTU
        case nil: break
        }
        if config.portMapOptions.localhost && !config.portMappings.isEmpty && addresses.contains(where: { $0.family == .v4 }) {
            plan.localnetInterfaces = Array(inputs.hostInterfaces.prefix(1))
        }
        return plan
    }

    static func engine(_ field: String, _ body: () throws -> Void) throws(CNIError) {
        do { try body() } catch { throw CNIError.config(field, "\(error)") }
    }

    // MARK: dual-home

    /// This side's table: connected routes and a default route per family via the gateway; and the
    /// rule that sends what enters on this interface to the *other* side's table. Each side needs
    /// only its own facts, so the two sides can be added in either order.
    static func planSide(_ side: Side, config: PluginConfig, inputs: PlanInputs, addresses: [InterfaceAddress]) throws(CNIError) -> DualHomePlan {
        let ifname = inputs.attachment.id.ifname
        let table = side == .left ? config.leftTable : config.rightTable
        let other = side == .left ? config.rightTable : config.leftTable
        guard !addresses.isEmpty else {
            throw CNIError.config("side", "\(side.rawValue): \(ifname) has no address (prevResult lists none for it and the interface has none)")
        }
        var plan = DualHomePlan()
        for subnet in Set(addresses.map(\.subnet)).sorted() {
            plan.routes.append(PlannedRoute(Route(table: table, destination: subnet, interface: ifname, scope: .link)))
        }
        let families = Set(addresses.map(\.family))
        var routed = Set<IPFamily>()
        for gateway in inputs.gateways where families.contains(gateway.family) && !routed.contains(gateway.family) {
            plan.routes.append(PlannedRoute(Route(table: table, destination: .default(gateway.family), gateway: gateway, interface: ifname)))
            routed.insert(gateway.family)
        }
        guard !routed.isEmpty else {
            throw CNIError.config("gateway", "\(side.rawValue) side \(ifname): no gateway in prevResult and none configured")
        }
        for family in IPFamily.allCases where families.contains(family) {
            plan.rules.append(PolicyRule(family: family, priority: config.rulePriority, table: other, inputInterface: ifname))
        }
        if families.contains(.v4) {
            plan.sysctls.append(SysctlSetting(.ipv4Forwarding, "1"))
            // Loose reverse-path filtering: a crossing packet's source is reached via the other table.
            plan.sysctls.append(SysctlSetting(.rpFilter(ifname), "2"))
        }
        if families.contains(.v6) { plan.sysctls.append(SysctlSetting(.ipv6ForwardingAll, "1")) }
        return plan
    }

    // MARK: host rules

    /// cni-outbound: what the host forwards from the container goes through its chain, in order;
    /// allowed traffic returns (so ASGs still apply), denied traffic is dropped.
    static func planOutbound(_ outbound: OutboundConfig, addresses: [InterfaceAddress], into builder: inout RulesetBuilder) throws {
        for family in IPFamily.allCases {
            let mine = Set(addresses.filter { $0.family == family }.map(\.address)).sorted()
            guard !mine.isEmpty else { continue }
            let chain = outbound.chainName
            builder.chain(family, .filter, chain)
            for address in mine { try builder.append(family, .filter, "FORWARD", "-s \(address) -j \(chain)") }
            try builder.append(family, .filter, chain, "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
            for rule in outbound.rules where rule.host.family == family {
                var text = "-d \(rule.host)"
                if let proto = rule.proto { text += " -p \(proto)" }
                if let port = rule.port, let proto = rule.proto { text += " -m \(proto) --dport \(String(port.map { $0 == "-" ? ":" : $0 }))" }
                do { try builder.append(family, .filter, chain, text + (rule.allow ? " -j RETURN" : " -j DROP")) } catch {
                    throw CNIError.config(rule.field, "\(error)")
                }
            }
            if !outbound.defaultAllow { try builder.append(family, .filter, chain, "-j DROP") }
        }
    }

    // MARK: container rules

    static func planFirewall(_ firewall: FirewallConfig, inputs: PlanInputs, into builder: inout RulesetBuilder) throws(CNIError) {
        for set in firewall.ipsets { builder.set(set.name, set.spec) }
        for (index, file) in firewall.files.enumerated() where index < inputs.firewallFiles.count {
            let saved: SaveFile
            do { saved = try SaveFileReader.read(inputs.firewallFiles[index], family: file.family) } catch {
                throw CNIError.config(file.field, "\(file.path): \(error)")
            }
            for section in saved.tables {
                for chain in section.chains where !section.table.builtinChains.contains(chain.name) { builder.chain(file.family, section.table, chain.name) }
                for (chain, rule) in section.rules { builder.append(file.family, section.table, chain, rule) }
                for chain in section.chains where (chain.policy ?? "ACCEPT") != "ACCEPT" {
                    try engine(file.field) { try builder.append(file.family, section.table, chain.name, "-j \(chain.policy!)") }
                }
            }
        }
        var parser = RuleParser(environment: inputs.environment, resolver: { name, family in HostResolver.resolve(name, family) })
        // iptables -I puts each rule first: the last inserted ends up on top.
        var inserted: [(IPFamily, NetfilterTable, String, Rule)] = []
        for spec in firewall.rules {
            let families: [IPFamily?] = spec.families ?? [nil]
            for family in families {
                parser.family = family
                let rules: [Rule]
                do { rules = try parser.parse(spec.rule) } catch { throw CNIError.config(spec.field + ".rule", error.detail) }
                for rule in rules {
                    if spec.insert { inserted.insert((rule.family, spec.table, spec.chain, rule), at: 0) } else { builder.append(rule.family, spec.table, spec.chain, rule) }
                }
            }
        }
        builder.prepend(inserted)
        for (table, chain, policy) in firewall.policies where policy != "ACCEPT" {
            for family in IPFamily.allCases {
                try engine("firewall.policies") { try builder.append(family, table, chain, "-j \(policy)") }
            }
        }
    }

    /// Interception: TCP to the redirected ports goes to the local proxy port, except the proxy's
    /// own port and traffic, loopback, and the excluded ports and networks. A container opts out
    /// with CNI_ARGS `DOCKNFV_REDIRECT=false`, or by running in an excluded namespace
    /// (`K8S_POD_NAMESPACE`).
    static func planRedirect(_ redirect: RedirectConfig, inputs: PlanInputs, addresses: [InterfaceAddress], into builder: inout RulesetBuilder) throws(CNIError) {
        func arg(_ key: CNIArgKey) -> String? { inputs.args.last { $0.0 == key.rawValue }?.1 }
        if let value = arg(.redirect)?.lowercased(), CNIArgKey.redirectOff.contains(value) { return }
        if let namespace = arg(.podNamespace), redirect.excludeNamespaces.contains(namespace) { return }
        for family in IPFamily.allCases where addresses.contains(where: { $0.family == family }) {
            for (direction, hook, chain) in [(redirect.inbound, "PREROUTING", "REDIR-IN"), (redirect.outbound, "OUTPUT", "REDIR-OUT")] {
                guard let direction else { continue }
                let outbound = hook == "OUTPUT"
                try engine("redirect") {
                    builder.chain(family, .nat, chain)
                    try builder.append(family, .nat, hook, "-p tcp -j \(chain)")
                    if outbound {
                        try builder.append(family, .nat, chain, "-d \(family == .v4 ? "127.0.0.0/8" : "::1/128") -j RETURN")
                        for uid in redirect.excludeUIDs { try builder.append(family, .nat, chain, "-m owner --uid-owner \(uid) -j RETURN") }
                    }
                    for cidr in redirect.excludeCIDRs where cidr.family == family {
                        try builder.append(family, .nat, chain, "\(outbound ? "-d" : "-s") \(cidr) -j RETURN")
                    }
                    for port in Set(redirect.excludePorts + [direction.proxyPort]).sorted() {
                        try builder.append(family, .nat, chain, "-p tcp -m tcp --dport \(port) -j RETURN")
                    }
                    if direction.ports.isEmpty {
                        try builder.append(family, .nat, chain, "-p tcp -j REDIRECT --to-ports \(direction.proxyPort)")
                    } else {
                        for port in direction.ports { try builder.append(family, .nat, chain, "-p tcp -m tcp --dport \(port) -j REDIRECT --to-ports \(direction.proxyPort)") }
                    }
                }
            }
        }
    }
}
