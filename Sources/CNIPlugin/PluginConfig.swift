import ASG
import CNI
import NetTypes
import PortMap
import RuleEngine
import RuleState
import StateFiles

/// Which side of a dual-homed VNF an attachment is.
public enum Side: String, Sendable, Equatable { case left, right }

/// `mtu`: a number sets the container interface's MTU; "auto" takes the MTU of the host's uplink
/// (the interface of its default route).
public enum MTUSetting: Sendable, Equatable { case fixed(UInt32), auto }

/// The `firewall` block (firewallnetns' fields): rules applied inside the container's namespace.
public struct FirewallConfig: Sendable {
    public struct RuleSpec: Sendable {
        /// "A" appends, "I" inserts at the top (as `iptables -A` / `-I` would, in order).
        public var insert: Bool
        public var table: NetfilterTable
        public var chain: String
        public var rule: String
        /// nil: the rule's addresses decide (IPv4 when it has none).
        public var families: [IPFamily]?
        public var field: String
    }
    public struct IPSetSpec: Sendable {
        public var name: String
        public var spec: SetSpec
    }
    public struct File: Sendable {
        public var path: String
        public var family: IPFamily
        public var field: String
    }
    /// (table, chain) → policy; a non-ACCEPT policy becomes the chain's last rule.
    public var policies: [(NetfilterTable, String, String)] = []
    public var rules: [RuleSpec] = []
    public var ipsets: [IPSetSpec] = []
    public var files: [File] = []
}

/// One cni-outbound rule: destination, protocol, port, action.
public struct OutboundRule: Sendable, Equatable {
    public var host: IPPrefix
    public var proto: String?
    public var port: String?
    public var allow: Bool
    public var field: String
}

/// The `outbound` block (cni-outbound's fields).
public struct OutboundConfig: Sendable {
    public var chainName = "CNI-OUTBOUND"
    public var defaultAllow = false
    public var rules: [OutboundRule] = []
}

/// The `redirect` block: codesealer-style interception inside the container's namespace.
public struct RedirectConfig: Sendable {
    public struct Direction: Sendable, Equatable {
        /// Ports redirected; empty = every TCP port.
        public var ports: [UInt16]
        public var proxyPort: UInt16
    }
    public var inbound: Direction?
    public var outbound: Direction?
    public var excludePorts: [UInt16] = []
    public var excludeCIDRs: [IPPrefix] = []
    /// Traffic of these users (the proxy's own) is never redirected (outbound).
    public var excludeUIDs: [UInt32] = []
    /// CNI_ARGS that turn redirection off for a container: `K8S_POD_NAMESPACE` in `excludeNamespaces`,
    /// or `DOCKNFV_REDIRECT=false` (an annotation passed through as a CNI arg).
    public var excludeNamespaces: [String] = []
}

/// Everything docknfv's config and runtimeConfig say, validated.
public struct PluginConfig: Sendable {
    public var cniVersion: CNIVersion
    public var name: String
    public var side: Side?
    public var leftTable: UInt32 = 101
    public var rightTable: UInt32 = 102
    public var rulePriority: UInt32 = 100
    public var gateways: [IPAddress] = []
    public var backend: BackendChoice = .auto
    public var stateDir = "/var/lib/docknfv"
    public var firewall: FirewallConfig?
    public var outbound: OutboundConfig?
    public var redirect: RedirectConfig?
    public var mtu: MTUSetting?
    public var mssClamp = false
    public var portMapOptions = PortMapPlanner.Options()
    public var asgOptions = ASGPlanner.Options()
    // runtimeConfig
    public var portMappings: [PortMapping] = []
    public var netOutRules: [EgressRule]?
    public var policyGroupID: String?
    public var prevResult: CNIResult?
    public var validAttachments: [AttachmentID]?

    /// Parses stdin's config for `command`.
    public init(_ json: JSON, command: CNICommand) throws(CNIError) {
        let config = try ConfigReader(json, path: "")
        cniVersion = try CNIVersion.negotiate(try config.string("cniVersion"), for: command)
        guard let name = try config.string("name"), Self.isValidNetworkName(name) else {
            throw CNIError.config("name", config.has("name") ? "must start with a letter or digit and hold only letters, digits, _ . and -" : "missing")
        }
        self.name = name
        try config.refuseUnknown(.network)
        if let text = try config.string("side") {
            guard let side = Side(rawValue: text) else { throw CNIError.config("side", "\"\(text)\": expected left or right") }
            self.side = side
        }
        if let value = try config.int("leftTable", in: 1...0xffff_fffe) { leftTable = UInt32(value) }
        if let value = try config.int("rightTable", in: 1...0xffff_fffe) { rightTable = UInt32(value) }
        for (key, table) in [("leftTable", leftTable), ("rightTable", rightTable)] where [253, 254, 255].contains(table) {
            throw CNIError.config(key, "\(table) is a reserved table (default, main, local)")
        }
        if leftTable == rightTable { throw CNIError.config("rightTable", "must differ from leftTable (\(leftTable))") }
        if let value = try config.int("rulePriority", in: 1...32765) { rulePriority = UInt32(value) }
        gateways = try Self.gateways(config)
        if let text = try config.string("backend") {
            guard let choice = BackendChoice(rawValue: text) else { throw CNIError.config("backend", "\"\(text)\": expected auto, nftables or iptables") }
            backend = choice
        }
        if let dir = try config.string("stateDir") {
            guard dir.hasPrefix("/"), !dir.split(separator: "/").contains("..") else { throw CNIError.config("stateDir", "\"\(dir)\" must be an absolute path without ..") }
            stateDir = dir
        }
        if let value = config["mtu"] {
            if value.string == "auto" { mtu = .auto } else {
                guard let number = value.int, (576...65535).contains(number) else { throw CNIError.config("mtu", "must be \"auto\" or a number in 576–65535") }
                mtu = .fixed(UInt32(number))
            }
        }
        mssClamp = try config.bool("mssClamp") ?? false
        if let block = try config.object("portMap") {
            try block.refuseUnknown(.portMap)
            portMapOptions.hairpinSNAT = try block.bool("snat") ?? true
            portMapOptions.localhost = try block.bool("localhost") ?? false
        }
        if let block = try config.object("asg") { try parseASGOptions(block) }
        if let block = try config.object("firewall") { firewall = try Self.firewall(block) }
        if let block = try config.object("outbound") { outbound = try Self.outbound(block) }
        if let block = try config.object("redirect") { redirect = try Self.redirect(block) }

        // DEL works from the attachment's record (and tolerates anything the runtime passes there);
        // reading a thousand ASG rules it will not use would only slow it down.
        if command != .del, let runtime = try config.object("runtimeConfig") {
            for key in RuntimeConfigKey.allCases {
                switch key {
                case .portMappings:
                    portMappings = try Self.portMappings(runtime, key: key.rawValue)
                case .netOutRules:
                    if runtime.has(key.rawValue) { netOutRules = try ASGConfig.rules(try runtime.objects(key.rawValue)) }
                case .metadata:
                    if let metadata = try runtime.object(key.rawValue) { policyGroupID = try metadata.string(MetadataKey.policyGroupID.rawValue) }
                case .outboundRules:
                    guard let rules = try runtime.array(key.rawValue) else { continue }
                    if outbound == nil { outbound = OutboundConfig() }
                    for (index, item) in rules.enumerated() {
                        outbound!.rules.append(try Self.outboundRule(try ConfigReader(item, path: "runtimeConfig.outboundRules[\(index)]")))
                    }
                }
            }
        }
        if let value = config["prevResult"] { prevResult = try CNIResult(value, field: "prevResult") }
        if command == .gc {
            guard let key = ConfigObject.gcListKeys.first(where: config.has) else {
                throw CNIError.config(ConfigObject.gcListKeys[0], "missing (GC needs the list of attachments still in use)")
            }
            validAttachments = try config.objects(key).map { item throws(CNIError) in
                func field(_ key: GCAttachmentKey) throws(CNIError) -> String {
                    guard let text = try item.string(key.rawValue), !text.isEmpty else { throw CNIError.config(item.field(key.rawValue), "must be a non-empty string") }
                    return text
                }
                return AttachmentID(containerID: try field(.containerID), ifname: try field(.ifname))
            }
        }
    }

    static func isValidNetworkName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.properties.isASCIIHexDigit || ("a"..."z").contains(first) || ("A"..."Z").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_.-".unicodeScalars.contains($0) }
    }

    static func gateways(_ config: ConfigReader) throws(CNIError) -> [IPAddress] {
        guard let value = config["gateway"] else { return [] }
        let texts: [String]
        if let text = value.string { texts = [text] } else if let list = try config.strings("gateway") { texts = list } else { texts = [] }
        var out: [IPAddress] = []
        for text in texts {
            guard let address = IPAddress(text) else { throw CNIError.config("gateway", "\"\(text)\" is not an IP address") }
            if out.contains(where: { $0.family == address.family }) { throw CNIError.config("gateway", "more than one \(address.family) gateway") }
            out.append(address)
        }
        return out
    }

    mutating func parseASGOptions(_ block: ConfigReader) throws(CNIError) {
        try block.refuseUnknown(.asg)
        for (index, text) in (try block.strings("denyNetworks") ?? []).enumerated() {
            guard let prefix = IPPrefix(text) else { throw CNIError.config("asg.denyNetworks[\(index)]", "\"\(text)\" is not a network in CIDR notation") }
            asgOptions.denyNetworks.append(prefix.network)
        }
        if let text = try block.string("defaultAction") {
            guard let action = ASGPlanner.Options.Action(rawValue: text.lowercased()) else { throw CNIError.config("asg.defaultAction", "\"\(text)\": expected reject or drop") }
            asgOptions.defaultAction = action
        }
        asgOptions.logDenied = try block.bool("logDenied") ?? false
        if let value = try block.int("setThreshold", in: 1...100_000) { asgOptions.setThreshold = value }
    }

    // MARK: runtimeConfig.portMappings

    static func portMappings(_ runtime: ConfigReader, key: String) throws(CNIError) -> [PortMapping] {
        var out: [PortMapping] = []
        for item in try runtime.objects(key) {
            // The CNI convention's names, or Cloud Foundry's.
            let hostKey = item.has("host_port") ? "host_port" : "hostPort"
            let containerKey = item.has("container_port") ? "container_port" : "containerPort"
            try item.refuseUnknown(.portMapping)
            guard let host = try item.int(hostKey, in: 1...65535) else { throw CNIError.config(item.field(hostKey), "missing") }
            guard let container = try item.int(containerKey, in: 1...65535) else { throw CNIError.config(item.field(containerKey), "missing") }
            let protoText = (try item.string("protocol") ?? "tcp").lowercased()
            guard let proto = PortMapping.Proto(rawValue: protoText) else {
                throw CNIError.config(item.field("protocol"), "\"\(protoText)\": expected tcp or udp")
            }
            var hostIP: IPAddress?
            if let text = try item.string("hostIP"), !text.isEmpty {
                guard let address = IPAddress(text) else { throw CNIError.config(item.field("hostIP"), "\"\(text)\" is not an IP address") }
                hostIP = address
            }
            let mapping = PortMapping(hostPort: UInt16(host), containerPort: UInt16(container), proto: proto, hostIP: hostIP)
            if out.contains(where: { $0.hostPort == mapping.hostPort && $0.proto == mapping.proto && ($0.hostIP == nil || mapping.hostIP == nil || $0.hostIP == mapping.hostIP) }) {
                throw CNIError.config(item.path, "host port \(mapping.hostPort)/\(proto.rawValue) is mapped twice")
            }
            out.append(mapping)
        }
        return out
    }

    // MARK: firewall

    static func firewall(_ block: ConfigReader) throws(CNIError) -> FirewallConfig {
        try block.refuseUnknown(.firewall)
        var out = FirewallConfig()
        if let value = block["policies"] {
            // {"INPUT": "DROP"} (filter table) or [{"table": "filter", "chain": "INPUT", "policy": "DROP"}].
            if let members = value.members {
                for (chain, policy) in members {
                    guard let text = policy.string else { throw CNIError.config("firewall.policies.\(chain)", "must be a string") }
                    out.policies.append(try Self.policy(.filter, chain, text, field: "firewall.policies.\(chain)"))
                }
            } else {
                for item in try block.objects("policies") {
                    try item.refuseUnknown(.firewallPolicy)
                    let table = try Self.table(item)
                    guard let chain = try item.string("chain") else { throw CNIError.config(item.field("chain"), "missing") }
                    guard let policy = try item.string("policy") else { throw CNIError.config(item.field("policy"), "missing") }
                    out.policies.append(try Self.policy(table, chain, policy, field: item.path))
                }
            }
        }
        for item in try block.objects("rules") {
            try item.refuseUnknown(.firewallRule)
            let type = (try item.string("type") ?? "A").uppercased()
            guard type == "A" || type == "I" else { throw CNIError.config(item.field("type"), "\"\(type)\": expected A (append) or I (insert)") }
            let table = try Self.table(item)
            guard let chain = try item.string("chain"), !chain.isEmpty else { throw CNIError.config(item.field("chain"), "missing") }
            guard table.builtinChains.contains(chain) || ChainNames.isValidUserChain(chain) else {
                throw CNIError.config(item.field("chain"), "\"\(chain)\" is not a chain of the \(table.rawValue) table nor a valid chain name")
            }
            guard let rule = try item.string("rule"), !rule.isEmpty else { throw CNIError.config(item.field("rule"), "missing") }
            var families: [IPFamily]?
            if let text = try item.string("family") {
                switch text.lowercased() {
                case "ipv4", "4": families = [.v4]
                case "ipv6", "6": families = [.v6]
                case "both", "46": families = [.v4, .v6]
                default: throw CNIError.config(item.field("family"), "\"\(text)\": expected ipv4, ipv6 or both")
                }
            }
            out.rules.append(.init(insert: type == "I", table: table, chain: chain, rule: rule, families: families, field: item.path))
        }
        for item in try block.objects("ipsets") {
            try item.refuseUnknown(.firewallIPSet)
            guard let name = try item.string("name"), Names.isValidSetName(name) else { throw CNIError.config(item.field("name"), "missing or not a valid set name") }
            let typeText = try item.string("type") ?? "hash:net"
            guard let type = SetType(rawValue: typeText) else { throw CNIError.config(item.field("type"), "\"\(typeText)\": expected \(SetType.allCases.map(\.rawValue).joined(separator: ", "))") }
            let familyText = try item.string("family") ?? "inet"
            guard let family: IPFamily = familyText == "inet" ? .v4 : familyText == "inet6" ? .v6 : nil else {
                throw CNIError.config(item.field("family"), "\"\(familyText)\": expected inet or inet6")
            }
            var entries: [SetEntry] = []
            for (index, text) in (try item.strings("entries") ?? []).enumerated() {
                guard let entry = SetEntry(text, type: type), entry.address.family == family else {
                    throw CNIError.config("\(item.field("entries"))[\(index)]", "\"\(text)\" is not a \(familyText) \(typeText) element")
                }
                entries.append(entry)
            }
            out.ipsets.append(.init(name: name, spec: SetSpec(type: type, family: family, entries: entries)))
        }
        let dataDir = try block.string("dataDir")
        for (index, item) in (try block.array("fwFiles") ?? []).enumerated() {
            let field = "firewall.fwFiles[\(index)]"
            var name: String?, family = IPFamily.v4
            if let text = item.string { name = text } else {
                let reader = try ConfigReader(item, path: field)
                try reader.refuseUnknown(.firewallFile)
                name = try reader.string("file")
                if let text = try reader.string("family") {
                    guard let parsed: IPFamily = text == "ipv4" ? .v4 : text == "ipv6" ? .v6 : nil else { throw CNIError.config(reader.field("family"), "expected ipv4 or ipv6") }
                    family = parsed
                }
            }
            guard let name, !name.isEmpty else { throw CNIError.config(field, "needs a file name") }
            guard name.hasPrefix("/") || dataDir != nil else { throw CNIError.config(field, "\"\(name)\" is relative and firewall.dataDir is not set") }
            out.files.append(.init(path: name.hasPrefix("/") ? name : "\(dataDir!)/\(name)", family: family, field: field))
        }
        return out
    }

    static func table(_ item: ConfigReader) throws(CNIError) -> NetfilterTable {
        let text = try item.string("table") ?? "filter"
        guard let table = NetfilterTable(rawValue: text) else { throw CNIError.config(item.field("table"), "\"\(text)\": expected filter, nat, mangle or raw") }
        return table
    }

    static func policy(_ table: NetfilterTable, _ chain: String, _ policy: String, field: String) throws(CNIError) -> (NetfilterTable, String, String) {
        guard table.builtinChains.contains(chain) else { throw CNIError.config(field, "\(chain) is not a built-in chain of the \(table.rawValue) table") }
        let upper = policy.uppercased()
        guard upper == "ACCEPT" || upper == "DROP" else { throw CNIError.config(field, "policy \"\(policy)\": expected ACCEPT or DROP") }
        return (table, chain, upper)
    }

    // MARK: outbound

    static func outbound(_ block: ConfigReader) throws(CNIError) -> OutboundConfig {
        try block.refuseUnknown(.outbound)
        var out = OutboundConfig()
        if let name = try block.string("chainName") {
            guard ChainNames.isValidUserChain(name), name.utf8.count <= 16 else { throw CNIError.config("outbound.chainName", "\"\(name)\": 1 to 16 letters, digits, - _ or .") }
            out.chainName = name
        }
        if let text = try block.string("defaultAction") { out.defaultAllow = try Self.action(text, field: "outbound.defaultAction") }
        for key in ["outboundRules", "runtimeRules"] {
            for item in try block.objects(key) { out.rules.append(try outboundRule(item)) }
        }
        return out
    }

    static func action(_ text: String, field: String) throws(CNIError) -> Bool {
        switch text.uppercased() {
        case "ACCEPT", "ALLOW": return true
        case "DROP", "DENY": return false
        default: throw CNIError.config(field, "\"\(text)\": expected ACCEPT or DROP")
        }
    }

    static func outboundRule(_ item: ConfigReader) throws(CNIError) -> OutboundRule {
        try item.refuseUnknown(.outboundRule)
        guard let hostText = try item.string("host"), let host = IPPrefix(hostText) ?? IPAddress(hostText).map({ IPPrefix(address: $0, length: $0.family.bitCount)! }) else {
            throw CNIError.config(item.field("host"), "missing or not an address or network")
        }
        var proto = try item.string("proto")?.lowercased()
        if proto == "all" || proto == "" { proto = nil }
        if let proto, proto != "tcp" && proto != "udp" && proto != "icmp" { throw CNIError.config(item.field("proto"), "\"\(proto)\": expected tcp, udp, icmp or all") }
        var port = try item.string("port")
        if port == "" { port = nil }
        if let text = port {
            let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { UInt16($0) }
            guard (1...2).contains(parts.count), parts.allSatisfy({ $0 != nil && $0! > 0 }), parts.first!! <= parts.last!! else {
                throw CNIError.config(item.field("port"), "\"\(text)\": expected a port or a range A-B in 1–65535")
            }
            guard proto == "tcp" || proto == "udp" else { throw CNIError.config(item.field("port"), "a port needs proto tcp or udp") }
        }
        let allow = try action(try item.string("action") ?? "ACCEPT", field: item.field("action"))
        return OutboundRule(host: host.network, proto: proto, port: port, allow: allow, field: item.path)
    }

    // MARK: redirect

    static func redirect(_ block: ConfigReader) throws(CNIError) -> RedirectConfig {
        try block.refuseUnknown(.redirect)
        var out = RedirectConfig()
        func direction(_ key: String, _ object: ConfigObject) throws(CNIError) -> RedirectConfig.Direction? {
            guard let item = try block.object(key) else { return nil }
            try item.refuseUnknown(object)
            guard let proxy = try item.int("proxyPort", in: 1...65535) else { throw CNIError.config(item.field("proxyPort"), "missing") }
            var ports: [UInt16] = []
            for (index, value) in (try item.array("ports") ?? []).enumerated() {
                ports.append(UInt16(try ConfigReader.int(value, field: "\(item.field("ports"))[\(index)]", in: 1...65535)))
            }
            return .init(ports: ports, proxyPort: UInt16(proxy))
        }
        out.inbound = try direction("inbound", .redirectInbound)
        out.outbound = try direction("outbound", .redirectOutbound)
        for (index, value) in (try block.array("excludePorts") ?? []).enumerated() {
            out.excludePorts.append(UInt16(try ConfigReader.int(value, field: "redirect.excludePorts[\(index)]", in: 1...65535)))
        }
        for (index, text) in (try block.strings("excludeCIDRs") ?? []).enumerated() {
            guard let prefix = IPPrefix(text) else { throw CNIError.config("redirect.excludeCIDRs[\(index)]", "\"\(text)\" is not a network in CIDR notation") }
            out.excludeCIDRs.append(prefix.network)
        }
        for (index, value) in (try block.array("excludeUIDs") ?? []).enumerated() {
            out.excludeUIDs.append(UInt32(try ConfigReader.int(value, field: "redirect.excludeUIDs[\(index)]", in: 0...0xffff_fffe)))
        }
        out.excludeNamespaces = try block.strings("excludeNamespaces") ?? []
        return out
    }
}
