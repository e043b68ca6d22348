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

    /// Read in one pass without building a JSON tree (a poll may carry tens of thousands).
    public static func decode(_ bytes: [UInt8]) throws(PolicyDecodeError) -> [Policy] {
        var scanner = JSON.Scanner(bytes)
        do {
            guard scanner.enterObject() else { try scanner.skipValue(); throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
            // total_policies: absent, or its value when it is an integer (nil: something else).
            var total: Int?? = .none, policies: [Policy]?
            while let key = try scanner.nextKey() {
                switch key {
                case "total_policies" where total == nil: total = .some(try scanner.value().int)
                case "policies" where policies == nil:
                    guard scanner.enterArray() else { try scanner.skipValue(); throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
                    var out: [Policy] = []
                    while try scanner.nextItem() { out.append(try policy(&scanner, index: out.count)) }
                    policies = out
                case "total_policies", "policies": throw PolicyDecodeError(field: "response", reason: "not JSON (duplicate key \"\(key)\")")
                default: try scanner.skipValue()
                }
            }
            try scanner.end()
            guard let policies else { throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
            if case .some(let value) = total, value != policies.count {
                throw PolicyDecodeError(field: "total_policies", reason: "\(value.map(String.init) ?? "not a number") but \(policies.count) policies listed")
            }
            return policies
        } catch let error as PolicyDecodeError {
            throw error
        } catch {
            throw PolicyDecodeError(field: "response", reason: "not JSON (\(error))")
        }
    }

    /// One group reference: `{"id": …, "tag": …}` (a destination adds protocol and ports).
    struct Member {
        var id: JSON?, tag: JSON?, proto: JSON?, start: JSON?, end: JSON?, ports = false
    }

    static let memberKeys = ["id", "tag", "protocol", "ports"].map { Array($0.utf8) }
    static let portKeys = ["start", "end"].map { Array($0.utf8) }
    static let policyKeys = ["source", "destination"].map { Array($0.utf8) }

    static func member(_ scanner: inout JSON.Scanner) throws(JSON.ParseError) -> Member? {
        guard scanner.enterObject() else { try scanner.skipValue(); return nil }
        var member = Member()
        while let key = try scanner.nextKey(in: memberKeys) {
            switch key {
            case 0 where member.id == nil: member.id = try scanner.value()
            case 1 where member.tag == nil: member.tag = try scanner.value()
            case 2 where member.proto == nil: member.proto = try scanner.value()
            case 3 where !member.ports:
                member.ports = true
                guard scanner.enterObject() else { try scanner.skipValue(); continue }
                while let key = try scanner.nextKey(in: portKeys) {
                    switch key {
                    case 0 where member.start == nil: member.start = try scanner.value()
                    case 1 where member.end == nil: member.end = try scanner.value()
                    default: try scanner.skipValue()
                    }
                }
            default: try scanner.skipValue()
            }
        }
        return member
    }

    /// Policy `index` of the document; field paths in errors are made only for an error.
    static func policy(_ scanner: inout JSON.Scanner, index: Int) throws -> Policy {
        var source: Member?, destination: Member?
        if scanner.enterObject() {
            while let key = try scanner.nextKey(in: policyKeys) {
                switch key {
                case 0 where source == nil: source = try member(&scanner) ?? Member()
                case 1 where destination == nil: destination = try member(&scanner) ?? Member()
                default: try scanner.skipValue()
                }
            }
        } else {
            try scanner.skipValue()
        }
        func field(_ path: String) -> String { "policies[\(index)]" + path }
        guard let source, let destination else { throw PolicyDecodeError(field: field(""), reason: "needs source and destination") }
        guard let sourceID = id(source.id) else { throw PolicyDecodeError(field: field(".source.id"), reason: idRule) }
        guard let sourceTag = tag(source.tag) else { throw PolicyDecodeError(field: field(".source.tag"), reason: tagRule) }
        guard let destinationID = id(destination.id) else { throw PolicyDecodeError(field: field(".destination.id"), reason: idRule) }
        guard let destinationTag = tag(destination.tag) else { throw PolicyDecodeError(field: field(".destination.tag"), reason: tagRule) }
        guard let protoText = destination.proto?.string, let proto = Policy.Proto(rawValue: protoText.lowercased()) else {
            throw PolicyDecodeError(field: field(".destination.protocol"), reason: "expected tcp or udp")
        }
        guard let start = destination.start?.int, let end = destination.end?.int else {
            throw PolicyDecodeError(field: field(".destination.ports"), reason: "needs start and end")
        }
        guard (1...65535).contains(start), (1...65535).contains(end) else {
            throw PolicyDecodeError(field: field(".destination.ports"), reason: "\(start)–\(end) is outside 1–65535")
        }
        guard start <= end else { throw PolicyDecodeError(field: field(".destination.ports"), reason: "start \(start) is greater than end \(end)") }
        return Policy(sourceID: sourceID, sourceTag: sourceTag, destinationID: destinationID, destinationTag: destinationTag,
                      proto: proto, ports: UInt16(start)...UInt16(end))
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

    static let idRule = "missing, empty or too long"
    static let tagRule = "expected 1 to 8 hex digits, not all zero"

    static func id(_ value: JSON?) -> String? {
        guard let id = value?.string, !id.isEmpty, id.utf8.count <= 128 else { return nil }
        return id
    }

    /// A tag: 1 to 8 hex digits, not zero (a zero mark is "no tag").
    static func tag(_ value: JSON?) -> UInt32? {
        guard let text = value?.string, (1...8).contains(text.utf8.count), let value = UInt32(text, radix: 16), value != 0 else { return nil }
        return value
    }
}
