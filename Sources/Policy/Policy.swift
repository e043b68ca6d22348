import RuleEngine
import StateFiles

/// One container-to-container policy as Cloud Foundry's Policy Server serves it: members of the
/// source group may reach members of the destination group on a protocol and port range.
/// Tags are the hex strings the server assigns to groups; they travel as the packet mark.
public struct Policy: Sendable, Hashable {
    public enum Proto: String, Sendable, Hashable, CaseIterable { case tcp, udp }
    public var sourceID: String
    public var sourceTag: UInt32
    public var destinationID: String
    public var destinationTag: UInt32
    public var proto: Proto
    public var ports: ClosedRange<UInt16>

    public init(sourceID: String, sourceTag: UInt32, destinationID: String, destinationTag: UInt32, proto: Proto, ports: ClosedRange<UInt16>) {
        self.sourceID = sourceID
        self.sourceTag = sourceTag
        self.destinationID = destinationID
        self.destinationTag = destinationTag
        self.proto = proto
        self.ports = ports
    }
}

/// A response that cannot be used: the poll is rejected as a whole.
public struct PolicyDecodeError: Error, Equatable, CustomStringConvertible, Sendable {
    public var field: String
    public var reason: String
    public var description: String { "\(field): \(reason)" }
}

/// `GET /networking/v1/internal/policies`:
/// `{"total_policies": N, "policies": [{"source": {"id", "tag"}, "destination": {"id", "tag", "protocol", "ports": {"start", "end"}}}]}`.
public enum PolicyDocument {
    public static let path = "/networking/v1/internal/policies"

    public static func decode(_ bytes: [UInt8]) throws(PolicyDecodeError) -> [Policy] {
        let json: JSON
        do { json = try JSON.parse(bytes) } catch { throw PolicyDecodeError(field: "response", reason: "not JSON (\(error))") }
        guard let items = json["policies"]?.array else { throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
        if let total = json["total_policies"], total.int != items.count {
            throw PolicyDecodeError(field: "total_policies", reason: "\(total.int.map(String.init) ?? "not a number") but \(items.count) policies listed")
        }
        var out: [Policy] = []
        out.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            let at = "policies[\(index)]"
            guard let source = item["source"], let destination = item["destination"] else { throw PolicyDecodeError(field: at, reason: "needs source and destination") }
            let sourceID = try id(source, "\(at).source.id")
            let sourceTag = try tag(source, "\(at).source.tag")
            let destinationID = try id(destination, "\(at).destination.id")
            let destinationTag = try tag(destination, "\(at).destination.tag")
            guard let protoText = destination["protocol"]?.string, let proto = Policy.Proto(rawValue: protoText.lowercased()) else {
                throw PolicyDecodeError(field: "\(at).destination.protocol", reason: "expected tcp or udp")
            }
            guard let ports = destination["ports"], let start = ports["start"]?.int, let end = ports["end"]?.int else {
                throw PolicyDecodeError(field: "\(at).destination.ports", reason: "needs start and end")
            }
            guard (1...65535).contains(start), (1...65535).contains(end) else {
                throw PolicyDecodeError(field: "\(at).destination.ports", reason: "\(start)–\(end) is outside 1–65535")
            }
            guard start <= end else { throw PolicyDecodeError(field: "\(at).destination.ports", reason: "start \(start) is greater than end \(end)") }
            out.append(Policy(sourceID: sourceID, sourceTag: sourceTag, destinationID: destinationID, destinationTag: destinationTag,
                              proto: proto, ports: UInt16(start)...UInt16(end)))
        }
        return out
    }

    /// The policies as the server writes them (the agent's last good state, and test servers).
    public static func encode(_ policies: [Policy]) -> [UInt8] {
        JSON.object([
            ("total_policies", .number(policies.count)),
            ("policies", .array(policies.map { policy in
                .object([
                    ("source", .object([("id", .string(policy.sourceID)), ("tag", .string(hex(policy.sourceTag)))])),
                    ("destination", .object([
                        ("id", .string(policy.destinationID)), ("tag", .string(hex(policy.destinationTag))),
                        ("protocol", .string(policy.proto.rawValue)),
                        ("ports", .object([("start", .number(Int(policy.ports.lowerBound))), ("end", .number(Int(policy.ports.upperBound)))])),
                    ])),
                ])
            })),
        ]).compact()
    }

    static func hex(_ tag: UInt32) -> String {
        let text = String(tag, radix: 16)
        return String(repeating: "0", count: max(0, 4 - text.count)) + text
    }

    static func id(_ object: JSON, _ field: String) throws(PolicyDecodeError) -> String {
        guard let id = object["id"]?.string, !id.isEmpty, id.utf8.count <= 128 else { throw PolicyDecodeError(field: field, reason: "missing, empty or too long") }
        return id
    }

    /// A tag: 1 to 8 hex digits, not zero (a zero mark is "no tag").
    static func tag(_ object: JSON, _ field: String) throws(PolicyDecodeError) -> UInt32 {
        guard let text = object["tag"]?.string, (1...8).contains(text.utf8.count), let value = UInt32(text, radix: 16), value != 0 else {
            throw PolicyDecodeError(field: field, reason: "expected 1 to 8 hex digits, not all zero")
        }
        return value
    }
}
