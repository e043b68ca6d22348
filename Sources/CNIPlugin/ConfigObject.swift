/// Every JSON object of docknfv's network configuration, with the keys docknfv accepts in it.
///
/// The decoder refuses unknown keys only through these lists (`ConfigReader.refuseUnknown` takes a
/// `ConfigObject`, never a list of its own), and reads the objects that tolerate other keys
/// through the key enums below, so `keys` is exactly what is accepted. docs/config-reference.md
/// documents them by `path`; a test compares the two.
public enum ConfigObject: CaseIterable, Sendable {
    case network, portMap, asg
    case firewall, firewallPolicy, firewallRule, firewallIPSet, firewallFile
    case outbound, outboundRule
    case redirect, redirectInbound, redirectOutbound
    case runtimeConfig, portMapping, netOutRule, netOutNetwork, netOutPorts, icmpInfo, metadata
    case gcAttachment

    /// Where the object stands, as the reference writes it: `.` between keys, `[]` for each
    /// element of an array. `outboundRule` also stands at `outbound.runtimeRules[]` and
    /// `runtimeConfig.outboundRules[]`.
    public var path: String {
        switch self {
        case .network: ""
        case .portMap: "portMap"
        case .asg: "asg"
        case .firewall: "firewall"
        case .firewallPolicy: "firewall.policies[]"
        case .firewallRule: "firewall.rules[]"
        case .firewallIPSet: "firewall.ipsets[]"
        case .firewallFile: "firewall.fwFiles[]"
        case .outbound: "outbound"
        case .outboundRule: "outbound.outboundRules[]"
        case .redirect: "redirect"
        case .redirectInbound: "redirect.inbound"
        case .redirectOutbound: "redirect.outbound"
        case .runtimeConfig: "runtimeConfig"
        case .portMapping: "runtimeConfig.portMappings[]"
        case .netOutRule: "runtimeConfig.netOutRules[]"
        case .netOutNetwork: "runtimeConfig.netOutRules[].networks[]"
        case .netOutPorts: "runtimeConfig.netOutRules[].ports[]"
        case .icmpInfo: "runtimeConfig.netOutRules[].icmp_info"
        case .metadata: "runtimeConfig.metadata"
        case .gcAttachment: "cni.dev/valid-attachments[]"
        }
    }

    /// The keys accepted in the object.
    public var keys: [String] {
        switch self {
        case .network: [
            "cniVersion", "name", "type", "args", "capabilities", "runtimeConfig", "prevResult", "dns", "ipam",
            "side", "leftTable", "rightTable", "rulePriority", "gateway", "backend", "stateDir",
            "firewall", "outbound", "redirect", "mtu", "mssClamp", "portMap", "asg",
        ] + Self.gcListKeys
        case .portMap: ["snat", "localhost"]
        case .asg: ["denyNetworks", "defaultAction", "logDenied", "setThreshold"]
        case .firewall: ["policies", "rules", "ipsets", "dataDir", "fwFiles"]
        case .firewallPolicy: ["table", "chain", "policy"]
        case .firewallRule: ["type", "table", "chain", "rule", "family"]
        case .firewallIPSet: ["name", "type", "family", "entries"]
        case .firewallFile: ["file", "family"]
        case .outbound: ["chainName", "defaultAction", "outboundRules", "runtimeRules"]
        case .outboundRule: ["host", "proto", "port", "action"]
        case .redirect: ["inbound", "outbound", "excludePorts", "excludeCIDRs", "excludeUIDs", "excludeNamespaces"]
        case .redirectInbound, .redirectOutbound: ["ports", "proxyPort"]
        case .runtimeConfig: RuntimeConfigKey.allCases.map(\.rawValue)
        case .portMapping: ["hostPort", "containerPort", "protocol", "hostIP", "host_port", "container_port"]
        case .netOutRule: ["protocol", "networks", "ports", "icmp_info", "log"]
        case .netOutNetwork, .netOutPorts: ["start", "end"]
        case .icmpInfo: ["type", "code"]
        case .metadata: MetadataKey.allCases.map(\.rawValue)
        case .gcAttachment: GCAttachmentKey.allCases.map(\.rawValue)
        }
    }

    /// Whether keys other than `keys` are refused. runtimeConfig and metadata carry what runtimes
    /// pass for everyone (Cloud Foundry's metadata holds app and space ids too): other keys there
    /// are ignored; so are keys beginning with `cni.dev/` at the top level.
    public var refusesUnknown: Bool {
        switch self {
        case .runtimeConfig, .metadata, .gcAttachment: false
        default: true
        }
    }

    /// The runtime's list of attachments still in use, read by GC: the current name first.
    public static let gcListKeys = ["cni.dev/valid-attachments", "cni.dev/attachments"]
}

/// What docknfv reads from runtimeConfig (the runtime fills it from the capabilities the plugin
/// entry declares).
public enum RuntimeConfigKey: String, CaseIterable, Sendable {
    case portMappings, netOutRules, metadata, outboundRules
}

/// What docknfv reads from runtimeConfig.metadata.
public enum MetadataKey: String, CaseIterable, Sendable {
    case policyGroupID = "policy_group_id"
}

/// The fields of one entry of GC's attachment list.
public enum GCAttachmentKey: String, CaseIterable, Sendable {
    case containerID, ifname
}
