import CNI
import Policy
import NetTypes
import PortMap
import RuleEngine
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

/// What docknfv applied for one attachment, kept in `<stateDir>/cni/<network>/<key>.json` so DEL
/// and GC can undo exactly that without the runtime's config or prevResult, CHECK can compare, and
/// the policy agent can see which containers run here. Written before the kernel is touched (a
/// crash leaves a record GC finds), atomically.
public struct AttachmentRecord: Sendable {
    public var attachment: Attachment
    public var netns: String?
    public var hostBackend: BackendKind?
    public var containerBackend: BackendKind?
    public var addresses: [InterfaceAddress] = []
    public var policyGroupID: String?
    public var side: Side?
    /// This side's table and the other side's (what its `iif` rule looks up).
    public var sideTable: UInt32 = 0
    public var otherTable: UInt32 = 0
    public var rulePriority: UInt32 = 0
    public var host: Ruleset
    public var container: Ruleset
    public var portMappings: [PortMapping] = []

    public init(attachment: Attachment) {
        self.attachment = attachment
        host = Ruleset(owner: attachment.owner)
        container = Ruleset(owner: attachment.owner)
    }

    // MARK: JSON

    func json() -> JSON {
        var members: [(String, JSON)] = [
            ("version", .number(1)),
            ("network", .string(attachment.network)),
            ("containerID", .string(attachment.id.containerID)),
            ("ifname", .string(attachment.id.ifname)),
            ("owner", .string(attachment.owner.name)),
        ]
        if let netns { members.append(("netns", .string(netns))) }
        if let hostBackend { members.append(("hostBackend", .string(hostBackend.rawValue))) }
        if let containerBackend { members.append(("containerBackend", .string(containerBackend.rawValue))) }
        members.append(("addresses", .array(addresses.map { .string($0.description) })))
        if let policyGroupID { members.append(("policyGroupID", .string(policyGroupID))) }
        if let side {
            members.append(("side", .string(side.rawValue)))
            members += [("sideTable", .number(Int(sideTable))), ("otherTable", .number(Int(otherTable))), ("rulePriority", .number(Int(rulePriority)))]
        }
        members.append(("portMappings", .array(portMappings.map { mapping in
            var fields: [(String, JSON)] = [("hostPort", .number(Int(mapping.hostPort))), ("containerPort", .number(Int(mapping.containerPort))),
                                            ("protocol", .string(mapping.proto.rawValue))]
            if let ip = mapping.hostIP { fields.append(("hostIP", .string(ip.description))) }
            return .object(fields)
        })))
        members.append(("host", RulesetCodec.encode(host)))
        members.append(("container", RulesetCodec.encode(container)))
        return .object(members)
    }

    init(json: JSON, path: String) throws(CNIError) {
        func corrupt(_ reason: String) -> CNIError {
            CNIError(CNIError.ioFailure, "docknfv's record of an attachment cannot be read", details: "\(path): \(reason); it was left as it is")
        }
        guard json["version"]?.int == 1 else { throw corrupt("unknown or missing version") }
        guard let network = json["network"]?.string, let containerID = json["containerID"]?.string, let ifname = json["ifname"]?.string else {
            throw corrupt("network, containerID or ifname missing")
        }
        self.init(attachment: Attachment(network: network, id: AttachmentID(containerID: containerID, ifname: ifname)))
        guard json["owner"]?.string == attachment.owner.name else { throw corrupt("owner does not match the attachment") }
        netns = json["netns"]?.string
        hostBackend = json["hostBackend"]?.string.flatMap(BackendKind.init(rawValue:))
        containerBackend = json["containerBackend"]?.string.flatMap(BackendKind.init(rawValue:))
        addresses = (json["addresses"]?.array ?? []).compactMap { $0.string.flatMap(InterfaceAddress.init) }
        policyGroupID = json["policyGroupID"]?.string
        if let text = json["side"]?.string {
            guard let side = Side(rawValue: text), let table = json["sideTable"]?.int, let other = json["otherTable"]?.int,
                  let priority = json["rulePriority"]?.int else { throw corrupt("side without its tables") }
            self.side = side
            (sideTable, otherTable, rulePriority) = (UInt32(truncatingIfNeeded: table), UInt32(truncatingIfNeeded: other), UInt32(truncatingIfNeeded: priority))
        }
        for item in json["portMappings"]?.array ?? [] {
            guard let host = item["hostPort"]?.int, let container = item["containerPort"]?.int, (1...65535).contains(host), (1...65535).contains(container),
                  let proto = item["protocol"]?.string.flatMap(PortMapping.Proto.init(rawValue:)) else { throw corrupt("a port mapping is invalid") }
            portMappings.append(PortMapping(hostPort: UInt16(host), containerPort: UInt16(container), proto: proto, hostIP: item["hostIP"]?.string.flatMap(IPAddress.init)))
        }
        do {
            host = try RulesetCodec.decode(json["host"] ?? .object([]), owner: attachment.owner)
            container = try RulesetCodec.decode(json["container"] ?? .object([]), owner: attachment.owner)
        } catch { throw corrupt("\(error)") }
    }
}

/// A ruleset as JSON: rule texts per (family, table, chain), user chains, sets. Rules read back
/// are trusted (they were validated when planned).
enum RulesetCodec {
    static func encode(_ ruleset: Ruleset) -> JSON {
        let tables: [JSON] = ruleset.tables.filter { !$0.isEmpty }.sorted { $0.key < $1.key }.map { table in
            .object([
                ("family", .string(table.family.rawValue)),
                ("table", .string(table.table.rawValue)),
                ("chains", .object(table.entries.sorted { $0.key < $1.key }.map { ($0.key, .array($0.value.map { .string($0.text) })) })),
                ("userChains", .array(table.userChains.sorted().map { .string($0) })),
            ])
        }
        let sets: [(String, JSON)] = ruleset.sets.sorted { $0.key < $1.key }.map { name, spec in
            (name, .object([("type", .string(spec.type.rawValue)), ("family", .string(spec.family.rawValue)),
                            ("entries", .array(spec.entries.map { .string($0.description) }))]))
        }
        return .object([("tables", .array(tables)), ("sets", .object(sets))])
    }

    struct Invalid: Error, CustomStringConvertible { var description: String }

    static func decode(_ json: JSON, owner: Owner) throws -> Ruleset {
        var ruleset = Ruleset(owner: owner)
        for item in json["tables"]?.array ?? [] {
            guard let family = item["family"]?.string.flatMap(IPFamily.init(rawValue:)),
                  let table = item["table"]?.string.flatMap(NetfilterTable.init(rawValue:)) else { throw Invalid(description: "a table without family or name") }
            var entries: [String: [RuleEntry]] = [:]
            for (chain, rules) in item["chains"]?.members ?? [] {
                entries[chain] = try (rules.array ?? []).map { rule in
                    guard let text = rule.string else { throw Invalid(description: "a rule of \(chain) is not a string") }
                    return RuleEntry(text: text, family: family, trusted: true)
                }
            }
            let userChains = Set((item["userChains"]?.array ?? []).compactMap(\.string))
            ruleset.tables.append(TableRules(family: family, table: table, entries: entries, userChains: userChains))
        }
        for (name, item) in json["sets"]?.members ?? [] {
            guard let type = item["type"]?.string.flatMap(SetType.init(rawValue:)), let family = item["family"]?.string.flatMap(IPFamily.init(rawValue:)) else {
                throw Invalid(description: "set \(name) without type or family")
            }
            let entries = try (item["entries"]?.array ?? []).map { value in
                guard let text = value.string, let entry = SetEntry(text, type: type) else { throw Invalid(description: "set \(name) holds an invalid element") }
                return entry
            }
            ruleset.sets[name] = SetSpec(type: type, family: family, entries: entries)
        }
        return ruleset
    }
}

/// The records of one state directory.
public struct AttachmentStore: Sendable {
    public var stateDir: String
    public init(stateDir: String) { self.stateDir = stateDir }

    public var root: String { stateDir + "/cni" }
    func directory(_ network: String) -> String { root + "/" + network }
    public func path(_ attachment: Attachment) -> String { directory(attachment.network) + "/" + attachment.key + ".json" }

    /// Serializes every CNI operation of this host on the state directory; a timeout is "try again later".
    public func lock(timeout: Double = 10) throws(CNIError) -> LockFile {
        do {
            try StateDirectory.prepare(root)
            return try LockFile.acquire(root + "/lock", timeout: timeout)
        } catch let error as LockFile.Error where error.isTimeout {
            throw CNIError(CNIError.tryAgainLater, "another docknfv operation holds the lock", details: error.description)
        } catch {
            throw CNIError(CNIError.ioFailure, "docknfv's state directory cannot be used", details: "\(error)")
        }
    }

    public func load(_ attachment: Attachment) throws(CNIError) -> AttachmentRecord? {
        try read(path(attachment))
    }

    func read(_ path: String) throws(CNIError) -> AttachmentRecord? {
        let bytes: [UInt8]?
        do { bytes = try AtomicFile.read(path) } catch { throw CNIError(CNIError.ioFailure, "cannot read \(path)", details: "\(error)") }
        guard let bytes else { return nil }
        let json: JSON
        do { json = try JSON.parse(bytes) } catch {
            throw CNIError(CNIError.ioFailure, "docknfv's record of an attachment cannot be read", details: "\(path): \(error); it was left as it is")
        }
        return try AttachmentRecord(json: json, path: path)
    }

    public func save(_ record: AttachmentRecord) throws(CNIError) {
        let directory = directory(record.attachment.network)
        do {
            try StateDirectory.prepare(directory)
            // Not fsynced: the record describes kernel state, which does not survive a power loss
            // either (a record torn by one is reported and set aside by DEL, never trusted).
            try AtomicFile.write(path(record.attachment), contents: record.json().rendered(), mode: 0o600, durable: false)
        } catch { throw CNIError(CNIError.ioFailure, "cannot write docknfv's record of \(record.attachment.id)", details: "\(error)") }
    }

    public func delete(_ attachment: Attachment) throws(CNIError) {
        let file = path(attachment)
        if unlink(file) != 0 && errno != ENOENT {
            throw CNIError(CNIError.ioFailure, "cannot remove \(file)", details: String(cString: strerror(errno)))
        }
    }

    /// Every record of `network` (a record that cannot be read is reported, not skipped).
    public func records(network: String) throws(CNIError) -> [Result<AttachmentRecord, CNIError>] {
        guard let dir = opendir(directory(network)) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".json") && !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted().map { name in
            do throws(CNIError) {
                guard let record = try read(directory(network) + "/" + name) else { throw CNIError(CNIError.ioFailure, "\(name) vanished") }
                return .success(record)
            } catch { return .failure(error) }
        }
    }
}

/// Which attachment holds each host port: `<stateDir>/cni/ports/<proto>-<port>-<hostIP|any>`,
/// holding the owner's key. Two attachments' DNATs for one host port would race (whichever table
/// the kernel consults first wins), so a second claim is refused — e.g. a runtime that passes `-p`
/// to every network whose plugins declare the portMappings capability. Changed only under the lock.
struct PortClaims {
    let directory: String

    init(store: AttachmentStore) { directory = store.root + "/ports" }

    static func name(_ mapping: PortMapping) -> String {
        "\(mapping.proto.rawValue)-\(mapping.hostPort)-\(mapping.hostIP?.description ?? "any")"
    }

    /// Claims every mapping for `key`; refuses (changing nothing) when another attachment holds
    /// the same protocol and port on the same host address, or on any address.
    func claim(_ mappings: [PortMapping], key: String, field: String = "runtimeConfig.portMappings") throws(CNIError) {
        guard !mappings.isEmpty else { return }
        let existing = entries()
        for mapping in mappings {
            let prefix = "\(mapping.proto.rawValue)-\(mapping.hostPort)-"
            for (name, owner) in existing where name.hasPrefix(prefix) && owner != key {
                let address = String(name.dropFirst(prefix.count))
                if address == "any" || mapping.hostIP == nil || address == mapping.hostIP!.description {
                    throw CNIError.config(field, "host port \(mapping.hostPort)/\(mapping.proto.rawValue)\(address == "any" ? "" : " on \(address)") is already mapped by another attachment (docknfv key \(owner)); declare the portMappings capability on one network only")
                }
            }
        }
        do {
            try StateDirectory.prepare(directory)
            for mapping in mappings where existing[Self.name(mapping)] != key {
                try AtomicFile.write(directory + "/" + Self.name(mapping), contents: Array(key.utf8), mode: 0o600, durable: false)
            }
        } catch { throw CNIError(CNIError.ioFailure, "cannot record the host ports", details: "\(error)") }
    }

    /// Releases every port `key` holds (those of `mappings` and any other left by an older run).
    func release(key: String) {
        for (name, owner) in entries() where owner == key { unlink(directory + "/" + name) }
    }

    /// name → owner key.
    func entries() -> [String: String] {
        guard let dir = opendir(directory) else { return [:] }
        defer { closedir(dir) }
        var out: [String: String] = [:]
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard !name.hasPrefix("."), let owner = try? AtomicFile.readString(directory + "/" + name) else { continue }
            out[name] = owner
        }
        return out
    }
}

extension AttachmentStore {
    /// Every container address recorded on this node with its policy group (the agent's registry).
    public func localContainers() -> [LocalContainer] {
        var out: [LocalContainer] = []
        for network in networks() {
            for case .success(let record) in (try? records(network: network)) ?? [] {
                for address in record.addresses { out.append(LocalContainer(address: address.address, groupID: record.policyGroupID)) }
            }
        }
        return out
    }

    /// The networks that have records (the policy agent's view of this node).
    public func networks() -> [String] {
        guard let dir = opendir(root) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix("."), name != "ports", name != "lock", entry.pointee.d_type == UInt8(DT_DIR) { out.append(name) }
        }
        return out.sorted()
    }
}
