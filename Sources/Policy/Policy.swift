import RuleEngine
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

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
    public static func decode(_ bytes: [UInt8]) throws(PolicyDecodeError) -> [Policy] { try read(bytes).policies }

    /// A decoded answer and where its parts are, so the next answer can be read incrementally.
    struct Layout {
        var bytes: [UInt8]
        var policies: [Policy]
        /// Each policy's byte range.
        var starts: [Int], ends: [Int]
        /// The offsets of the policies array's `[` and `]`.
        var open: Int, close: Int
        /// total_policies: absent, or its value when it is an integer (nil: something else);
        /// and whether it came after the array.
        var total: Int??
        var totalAfter = false
    }

    static func read(_ bytes: [UInt8]) throws(PolicyDecodeError) -> Layout {
        var scanner = JSON.Scanner(bytes)
        do {
            guard scanner.enterObject() else { try scanner.skipValue(); throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
            var total: Int?? = .none, layout: Layout?, totalAfter = false
            while let key = try scanner.nextKey() {
                switch key {
                case "total_policies" where total == nil:
                    total = .some(try scanner.value().int)
                    totalAfter = layout != nil
                case "policies" where layout == nil:
                    _ = scanner.peek()
                    let open = scanner.offset
                    guard scanner.enterArray() else { try scanner.skipValue(); throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
                    var read = Layout(bytes: bytes, policies: [], starts: [], ends: [], open: open, close: 0)
                    while try scanner.nextItem() {
                        _ = scanner.peek()
                        read.starts.append(scanner.offset)
                        read.policies.append(try policy(&scanner, index: read.policies.count))
                        read.ends.append(scanner.offset)
                    }
                    read.close = scanner.offset - 1
                    layout = read
                case "total_policies", "policies": throw PolicyDecodeError(field: "response", reason: "not JSON (duplicate key \"\(key)\")")
                default: try scanner.skipValue()
                }
            }
            try scanner.end()
            guard var layout else { throw PolicyDecodeError(field: "policies", reason: "missing or not an array") }
            layout.total = total
            layout.totalAfter = totalAfter
            try checkTotal(total, layout.policies.count)
            return layout
        } catch let error as PolicyDecodeError {
            throw error
        } catch {
            throw PolicyDecodeError(field: "response", reason: "not JSON (\(error))")
        }
    }

    /// Where the policies array opens, and total_policies when it comes before: the small head
    /// of an answer, read again on every answer (it changes with the count). Nil: not that shape.
    static func head(_ bytes: [UInt8]) -> (open: Int, total: Int??)? {
        var scanner = JSON.Scanner(bytes)
        guard scanner.enterObject() else { return nil }
        var total: Int?? = .none
        do {
            while let key = try scanner.nextKey() {
                switch key {
                case "total_policies" where total == nil: total = .some(try scanner.value().int)
                case "policies":
                    guard scanner.peek() == UInt8(ascii: "[") else { return nil }
                    return (scanner.offset, total)
                case "total_policies": return nil
                default: try scanner.skipValue()
                }
            }
        } catch { return nil }
        return nil
    }

    static func checkTotal(_ total: Int??, _ count: Int) throws(PolicyDecodeError) {
        if case .some(let value) = total, value != count {
            throw PolicyDecodeError(field: "total_policies", reason: "\(value.map(String.init) ?? "not a number") but \(count) policies listed")
        }
    }

    /// One group reference: `{"id": …, "tag": …}` (a destination adds protocol and ports).
    struct Member {
        var id: JSON?, tag: JSON?, proto: JSON?, start: JSON?, end: JSON?, ports = false
    }

    static let memberKeys = ["id", "tag", "protocol", "ports"].map { Array($0.utf8) }
    static let portKeys = ["start", "end"].map { Array($0.utf8) }
    static let policyKeys = ["source", "destination"].map { Array($0.utf8) }

    /// A key of the schema given twice is refused, as a JSON reader that keeps every member would.
    static func duplicate(_ keys: [[UInt8]], _ index: Int) -> PolicyDecodeError {
        PolicyDecodeError(field: "response", reason: "not JSON (duplicate key \"\(String(decoding: keys[index], as: UTF8.self))\")")
    }

    static func member(_ scanner: inout JSON.Scanner) throws -> Member? {
        guard scanner.enterObject() else { try scanner.skipValue(); return nil }
        var member = Member()
        while let key = try scanner.nextKey(in: memberKeys) {
            switch key {
            case 0: guard member.id == nil else { throw duplicate(memberKeys, key) }; member.id = try scanner.value()
            case 1: guard member.tag == nil else { throw duplicate(memberKeys, key) }; member.tag = try scanner.value()
            case 2: guard member.proto == nil else { throw duplicate(memberKeys, key) }; member.proto = try scanner.value()
            case 3:
                guard !member.ports else { throw duplicate(memberKeys, key) }
                member.ports = true
                guard scanner.enterObject() else { try scanner.skipValue(); continue }
                while let key = try scanner.nextKey(in: portKeys) {
                    switch key {
                    case 0: guard member.start == nil else { throw duplicate(portKeys, key) }; member.start = try scanner.value()
                    case 1: guard member.end == nil else { throw duplicate(portKeys, key) }; member.end = try scanner.value()
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
                case 0: guard source == nil else { throw duplicate(policyKeys, key) }; source = try member(&scanner) ?? Member()
                case 1: guard destination == nil else { throw duplicate(policyKeys, key) }; destination = try member(&scanner) ?? Member()
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

/// Decodes the successive answers of one Policy Server, reading again only the bytes that differ
/// from the last answer: the policies before and after the changed span are taken from the last
/// answer (they are the same bytes, already checked), so a poll that changes one policy among
/// tens of thousands costs a byte comparison and the decoding of that policy. Any doubt (a
/// change outside the policies array, an error) falls back to reading the whole answer, which
/// also gives the canonical error.
public final class PolicyDecoder: @unchecked Sendable { // state guarded by `lock`
    private var lock = pthread_mutex_t()
    private var last: PolicyDocument.Layout?
    /// How many policies the last `decode` decoded (the others were taken from the answer before).
    public private(set) var lastDecodedCount = 0

    public init() { pthread_mutex_init(&lock, nil) }

    public func decode(_ bytes: [UInt8]) throws(PolicyDecodeError) -> [Policy] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let last, let layout = incremental(bytes, last) {
            self.last = layout
            return layout.policies
        }
        do {
            let layout = try PolicyDocument.read(bytes)
            last = layout
            lastDecodedCount = layout.policies.count
            return layout.policies
        } catch {
            last = nil
            throw error
        }
    }

    /// The new layout from the last one, or nil to read the whole answer.
    func incremental(_ bytes: [UInt8], _ last: PolicyDocument.Layout) -> PolicyDocument.Layout? {
        if bytes == last.bytes { lastDecodedCount = 0; return last }
        // The head (up to the array's "[") is read again: total_policies changes with the count.
        guard let head = PolicyDocument.head(bytes) else { return nil }
        if case .some = head.total, last.totalAfter { return nil }
        let shift = head.open - last.open // of the policies before the change
        let delta = bytes.count - last.bytes.count // of the policies after it
        let prefix = Self.commonPrefix(bytes, from: head.open + 1, last.bytes, from: last.open + 1)
        let limit = min(bytes.count - head.open - 1, last.bytes.count - last.open - 1) - prefix
        let suffix = Self.commonSuffix(bytes, last.bytes, limit: limit)
        // What follows the array must be unchanged.
        guard last.bytes.count - suffix <= last.close else { return nil }
        let changedEnd = bytes.count - suffix // in the new answer
        // Policies wholly before the change are the same; reading resumes after the last of them.
        var kept = 0
        while kept < last.ends.count, last.ends[kept] <= last.open + 1 + prefix { kept += 1 }
        var layout = PolicyDocument.Layout(bytes: bytes, policies: Array(last.policies[..<kept]), starts: last.starts[..<kept].map { $0 + shift },
                                           ends: last.ends[..<kept].map { $0 + shift }, open: head.open, close: 0,
                                           total: last.totalAfter ? last.total : head.total, totalAfter: last.totalAfter)
        var scanner = JSON.Scanner(bytes, offset: kept == 0 ? head.open + 1 : last.ends[kept - 1] + shift, atFirst: kept == 0)
        do {
            while try scanner.nextItem() {
                _ = scanner.peek()
                let start = scanner.offset
                // Past the change, at the start of a policy the last answer had: the rest is the same.
                if start >= changedEnd, let index = Self.index(of: start - delta, in: last.starts) {
                    layout.policies += last.policies[index...]
                    layout.starts += last.starts[index...].map { $0 + delta }
                    layout.ends += last.ends[index...].map { $0 + delta }
                    layout.close = last.close + delta
                    lastDecodedCount = layout.policies.count - kept - (last.policies.count - index)
                    try PolicyDocument.checkTotal(layout.total, layout.policies.count)
                    return layout
                }
                layout.starts.append(start)
                layout.policies.append(try PolicyDocument.policy(&scanner, index: layout.policies.count))
                layout.ends.append(scanner.offset)
            }
            // The array closed: what follows must be the last answer's unchanged tail, so this must
            // be the last answer's closing bracket, moved (a "]" inside a string of the last
            // answer's tail is not).
            layout.close = scanner.offset - 1
            guard layout.close >= changedEnd, layout.close == last.close + delta else { return nil }
            lastDecodedCount = layout.policies.count - kept
            try PolicyDocument.checkTotal(layout.total, layout.policies.count)
            return layout
        } catch {
            return nil
        }
    }

    static func index(of offset: Int, in starts: [Int]) -> Int? {
        var low = 0, high = starts.count
        while low < high {
            let middle = (low + high) / 2
            if starts[middle] < offset { low = middle + 1 } else { high = middle }
        }
        return low < starts.count && starts[low] == offset ? low : nil
    }

    /// How many bytes are the same in `a` from `i` and in `b` from `j`.
    static func commonPrefix(_ a: [UInt8], from i: Int, _ b: [UInt8], from j: Int) -> Int {
        a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in
                let count = max(0, min(a.count - i, b.count - j))
                var index = 0
                while index + 8 <= count,
                      a.loadUnaligned(fromByteOffset: i + index, as: UInt64.self) == b.loadUnaligned(fromByteOffset: j + index, as: UInt64.self) {
                    index += 8
                }
                while index < count, a[i + index] == b[j + index] { index += 1 }
                return index
            }
        }
    }

    /// How many bytes the ends of `a` and `b` share, at most `limit`.
    static func commonSuffix(_ a: [UInt8], _ b: [UInt8], limit: Int) -> Int {
        a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in
                var length = 0
                while length + 8 <= limit,
                      a.loadUnaligned(fromByteOffset: a.count - length - 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: b.count - length - 8, as: UInt64.self) {
                    length += 8
                }
                while length < limit, a[a.count - length - 1] == b[b.count - length - 1] { length += 1 }
                return length
            }
        }
    }
}
