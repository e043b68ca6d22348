import NetTypes
import StateFiles

/// A plugin result (`prevResult` on input, our output): the parts docknfv reads, with the JSON
/// kept whole so that everything else passes through unchanged.
public struct CNIResult: Sendable {
    public struct IPConfig: Sendable, Equatable {
        public var address: InterfaceAddress
        public var gateway: IPAddress?
        /// Index into `interfaces`.
        public var interface: Int?
    }

    public struct Interface: Sendable, Equatable {
        public var name: String
        public var sandbox: String
    }

    public var json: JSON
    public var interfaces: [Interface]
    public var ips: [IPConfig]

    /// Reads a result (the field names in errors start with `field`, e.g. "prevResult").
    public init(_ json: JSON, field: String = "prevResult") throws(CNIError) {
        guard let members = json.members else { throw CNIError.config(field, "must be an object") }
        self.json = json
        interfaces = []
        ips = []
        if let list = json["interfaces"] {
            guard let items = list.array else { throw CNIError.config("\(field).interfaces", "must be an array") }
            for (index, item) in items.enumerated() {
                guard let name = item["name"]?.string else { throw CNIError.config("\(field).interfaces[\(index)].name", "must be a string") }
                if let sandbox = item["sandbox"], sandbox.string == nil { throw CNIError.config("\(field).interfaces[\(index)].sandbox", "must be a string") }
                interfaces.append(Interface(name: name, sandbox: item["sandbox"]?.string ?? ""))
            }
        }
        if let list = json["ips"] {
            guard let items = list.array else { throw CNIError.config("\(field).ips", "must be an array") }
            for (index, item) in items.enumerated() {
                let at = "\(field).ips[\(index)]"
                guard let text = item["address"]?.string else { throw CNIError.config("\(at).address", "must be a string") }
                guard text.contains("/"), let address = InterfaceAddress(text) else { throw CNIError.config("\(at).address", "\"\(text.prefix(60))\" is not an address in CIDR notation") }
                var gateway: IPAddress?
                if let value = item["gateway"] {
                    guard let text = value.string, let parsed = IPAddress(text), parsed.family == address.family else {
                        throw CNIError.config("\(at).gateway", "must be an \(address.family) address")
                    }
                    gateway = parsed
                }
                var interface: Int?
                if let value = item["interface"] {
                    guard let number = value.int, number >= 0, number < interfaces.count else {
                        throw CNIError.config("\(at).interface", "must index into interfaces (0..<\(interfaces.count))")
                    }
                    interface = number
                }
                if let version = item["version"]?.string, version != (address.family == .v4 ? "4" : "6") {
                    throw CNIError.config("\(at).version", "\"\(version)\" does not match address \(text)")
                }
                ips.append(IPConfig(address: address, gateway: gateway, interface: interface))
            }
        }
        _ = members
    }

    /// The addresses configured on `ifname` in `sandbox`: those whose `interface` points at it, or
    /// every address when the previous plugin did not say which interface they belong to.
    public func ips(of ifname: String, sandbox: String?) -> [IPConfig] {
        let matching = Set(interfaces.indices.filter { interfaces[$0].name == ifname && (sandbox == nil || interfaces[$0].sandbox.isEmpty || interfaces[$0].sandbox == sandbox) })
        let attributed = ips.filter { $0.interface != nil }
        if attributed.isEmpty { return ips }
        return ips.filter { $0.interface.map(matching.contains) ?? false }
    }

    /// The result as `version` has it: `cniVersion` set, and `ips[].version` present before 1.0.0
    /// and absent from 1.0.0 on (the one field whose presence changed between the versions docknfv speaks).
    public func rendered(as version: CNIVersion) -> JSON {
        guard var members = json.members else { return json }
        set(&members, "cniVersion", .string(version.description))
        if let index = members.firstIndex(where: { $0.0 == "ips" }), let items = members[index].1.array {
            members[index].1 = .array(items.enumerated().map { offset, item in
                guard var fields = item.members else { return item }
                fields.removeAll { $0.0 == "version" }
                if version < .v1_0_0 { fields.insert(("version", .string(ips[offset].address.family == .v4 ? "4" : "6")), at: 0) }
                return .object(fields)
            })
        }
        return .object(members)
    }

    /// An empty result (no previous plugin): docknfv changed nothing a result describes.
    public static func empty() -> CNIResult {
        // swiftlint:disable:next force_try
        try! CNIResult(.object([("interfaces", .array([])), ("ips", .array([]))]))
    }
}

func set(_ members: inout [(String, JSON)], _ key: String, _ value: JSON) {
    if let index = members.firstIndex(where: { $0.0 == key }) { members[index].1 = value } else { members.insert((key, value), at: 0) }
}
