/// A small JSON reader and writer for docknfv's own state files, without Foundation (whose
/// start-up cost every short-lived docknfv process would pay). Objects keep their keys in order;
/// duplicate keys are an error.
public enum JSON: Equatable, Sendable {
    case object([(String, JSON)])
    case array([JSON])
    case string(String)
    case number(Int)
    /// A number with a fraction or exponent, kept as written (docknfv's own files never hold one;
    /// configs from others may, and are passed through unchanged).
    case decimal(String)
    case bool(Bool)
    case null

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.object(let x), .object(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.array(let x), .array(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.decimal(let x), .decimal(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var string: String? { if case .string(let value) = self { return value }; return nil }
    public var int: Int? { if case .number(let value) = self { return value }; return nil }
    public var array: [JSON]? { if case .array(let value) = self { return value }; return nil }
    public var members: [(String, JSON)]? { if case .object(let value) = self { return value }; return nil }
    public var bool: Bool? { if case .bool(let value) = self { return value }; return nil }

    // MARK: Reading

    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> JSON {
        var reader = Reader(bytes: bytes)
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw ParseError(offset: reader.index, reason: "trailing data") }
        return value
    }

    /// `parse`, leaving out the top-level object's members named in `omitted`: their values are
    /// checked as JSON (all but duplicate keys inside them) and not built. For a reader
    /// that will not look at a large member (a CNI DEL and the runtime config's thousand ASG rules).
    public static func parse(_ bytes: [UInt8], omittingMembers omitted: Set<String>) throws(ParseError) -> JSON {
        var reader = Reader(bytes: bytes)
        reader.omitted = omitted
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw ParseError(offset: reader.index, reason: "trailing data") }
        return value
    }

    struct Reader {
        let bytes: [UInt8]
        var index = 0
        /// Members of the top-level object that are checked but not built (`parse(_:omittingMembers:)`).
        var omitted: Set<String> = []

        // The loops over bytes below read through an unsafe buffer: state files and CNI configs
        // are hundreds of kilobytes, and an array subscript checks its bounds on every byte.

        mutating func skipSpace() {
            let start = index
            index = bytes.withUnsafeBufferPointer { buffer in
                var at = start
                while at < buffer.count {
                    switch buffer[at] {
                    case 0x20, 0x09, 0x0a, 0x0d: at += 1
                    default: return at
                    }
                }
                return at
            }
        }

        /// Where the string body starting at `start` ends — at the first quote, backslash, control
        /// character or the end of the bytes — and whether it is all ASCII up to there.
        func stringBody(from start: Int) -> (end: Int, ascii: Bool) {
            bytes.withUnsafeBufferPointer { ByteScan.plainRun($0, from: start) }
        }

        func fail(_ reason: String) -> ParseError { ParseError(offset: index, reason: reason) }

        /// Checks the nesting and moves to the next value's first byte.
        mutating func valueStart(depth: Int) throws(ParseError) -> UInt8 {
            guard depth < 64 else { throw fail("nested too deeply") }
            skipSpace()
            guard index < bytes.count else { throw fail("unexpected end") }
            return bytes[index]
        }

        mutating func value(depth: Int) throws(ParseError) -> JSON {
            switch try valueStart(depth: depth) {
            case UInt8(ascii: "{"):
                index += 1
                var members: [(String, JSON)] = []
                var keys = Set<String>() // only used past 8 members; small objects are checked linearly
                var skipped: [String] = [] // omitted members met (parse(_:omittingMembers:))
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                while true {
                    skipSpace()
                    let key = try string()
                    let duplicate = members.count < 8 ? members.contains { $0.0 == key } : !keys.insert(key).inserted
                    if members.count == 7 { keys = Set(members.map(\.0) + [key]) }
                    guard !duplicate else { throw fail("duplicate key \"\(key)\"") }
                    skipSpace()
                    try expect(UInt8(ascii: ":"))
                    if depth == 0, !omitted.isEmpty, omitted.contains(key) {
                        guard !skipped.contains(key) else { throw fail("duplicate key \"\(key)\"") }
                        skipped.append(key)
                        try skip(depth: depth + 1)
                    } else {
                        members.append((key, try value(depth: depth + 1)))
                    }
                    skipSpace()
                    if try separatorEnds(UInt8(ascii: "}")) { return .object(members) }
                }
            case UInt8(ascii: "["):
                index += 1
                var items: [JSON] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                while true {
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    if try separatorEnds(UInt8(ascii: "]")) { return .array(items) }
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default: return try number()
            }
        }

        mutating func separatorEnds(_ close: UInt8) throws(ParseError) -> Bool {
            guard index < bytes.count else { throw fail("unexpected end") }
            if bytes[index] == close { index += 1; return true }
            try expect(UInt8(ascii: ","))
            return false
        }

        mutating func expect(_ byte: UInt8) throws(ParseError) {
            guard index < bytes.count, bytes[index] == byte else { throw fail("expected \"\(Character(Unicode.Scalar(byte)))\"") }
            index += 1
        }

        mutating func literal(_ word: String) throws(ParseError) {
            for byte in word.utf8 { try expect(byte) }
        }

        mutating func number() throws(ParseError) -> JSON {
            let (start, fraction) = try scanNumber()
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            if fraction { return .decimal(text) }
            guard let value = Int(text) else { index = start; throw fail("integer out of range") }
            return .number(value)
        }

        /// Moves past a number; returns where it starts and whether it has a fraction or exponent.
        mutating func scanNumber() throws(ParseError) -> (start: Int, fraction: Bool) {
            let start = index
            func digits() -> Int {
                let from = index
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
                return index - from
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { index = start; throw fail("expected a value") }
            var fraction = false
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw fail("expected digits after the decimal point") }
                fraction = true
            }
            if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw fail("expected digits in the exponent") }
                fraction = true
            }
            return (start, fraction)
        }

        /// Moves past a value, checking it as `value` does (but for duplicate keys) and building
        /// nothing: no allocation for plain strings, numbers within range, objects and arrays.
        mutating func skip(depth: Int) throws(ParseError) {
            switch try valueStart(depth: depth) {
            case UInt8(ascii: "{"):
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return }
                while true {
                    skipSpace()
                    try skipString()
                    skipSpace()
                    try expect(UInt8(ascii: ":"))
                    try skip(depth: depth + 1)
                    skipSpace()
                    if try separatorEnds(UInt8(ascii: "}")) { return }
                }
            case UInt8(ascii: "["):
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return }
                while true {
                    try skip(depth: depth + 1)
                    skipSpace()
                    if try separatorEnds(UInt8(ascii: "]")) { return }
                }
            case UInt8(ascii: "\""): try skipString()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default:
                let (start, fraction) = try scanNumber()
                // Up to 18 digits always fit an Int; longer ones are checked as `number` does.
                if !fraction, index - start > 18, Int(String(decoding: bytes[start..<index], as: UTF8.self)) == nil {
                    index = start
                    throw fail("integer out of range")
                }
            }
        }

        /// Moves past a string: plain ASCII without escapes is only scanned; anything else is
        /// read as `string` reads it (escapes and UTF-8 checked).
        mutating func skipString() throws(ParseError) {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { try expect(UInt8(ascii: "\"")); return }
            let (end, ascii) = stringBody(from: index + 1)
            if ascii, end < bytes.count, bytes[end] == UInt8(ascii: "\"") { index = end + 1; return }
            _ = try string()
        }

        mutating func string() throws(ParseError) -> String {
            try expect(UInt8(ascii: "\""))
            // Fast path: no escapes before the closing quote.
            let (end, ascii) = stringBody(from: index)
            if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
                let slice = bytes[index..<end]
                guard let text = ascii ? String(decoding: slice, as: UTF8.self) : String(validating: slice, as: UTF8.self) else { throw fail("invalid UTF-8") }
                index = end + 1
                return text
            }
            var out: [UInt8] = []
            while true {
                guard index < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    guard let text = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8") }
                    return text
                case UInt8(ascii: "\\"):
                    guard index < bytes.count else { throw fail("unterminated escape") }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                    case UInt8(ascii: "n"): out.append(0x0a)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0d)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0c)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xd800..<0xdc00).contains(scalar) {
                            try expect(UInt8(ascii: "\\")); try expect(UInt8(ascii: "u"))
                            let low = try hex4()
                            guard (0xdc00..<0xe000).contains(low) else { throw fail("invalid surrogate pair") }
                            scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                        }
                        guard let value = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                        out += Array(String(Character(value)).utf8)
                    default: throw fail("invalid escape")
                    }
                default:
                    guard byte >= 0x20 else { throw fail("control character in a string") }
                    out.append(byte)
                }
            }
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
                throw fail("invalid \\u escape")
            }
            index += 4
            return value
        }
    }

    /// Reads a document piece by piece, without building a tree: for large documents of a known
    /// shape (a Policy Server answer with tens of thousands of policies). Unknown members are
    /// skipped with `skipValue`.
    public struct Scanner {
        var reader: Reader

        public init(_ bytes: [UInt8]) { reader = Reader(bytes: bytes) }

        /// A scanner that resumes inside an array at `offset`: at its first item when `atFirst`,
        /// else just after an item (the next `nextItem` expects a separator).
        public init(_ bytes: [UInt8], offset: Int, atFirst: Bool) {
            reader = Reader(bytes: bytes, index: offset)
            first = atFirst
        }

        /// Where the scanner stands in the document.
        public var offset: Int { reader.index }

        /// The next value's first byte (after spaces), nil at the end.
        public mutating func peek() -> UInt8? {
            reader.skipSpace()
            return reader.index < reader.bytes.count ? reader.bytes[reader.index] : nil
        }

        /// Whether the next value is an object (then entered) — false leaves it to be skipped.
        public mutating func enterObject() -> Bool {
            guard peek() == UInt8(ascii: "{") else { return false }
            reader.index += 1
            first = true
            return true
        }

        /// Whether the next value is an array (then entered).
        public mutating func enterArray() -> Bool {
            guard peek() == UInt8(ascii: "[") else { return false }
            reader.index += 1
            first = true
            return true
        }

        var first = true

        /// The next member's key in the object entered last, or nil after its closing brace.
        public mutating func nextKey() throws(ParseError) -> String? {
            guard try nextMember() else { return nil }
            let key = try reader.string()
            reader.skipSpace()
            try reader.expect(UInt8(ascii: ":"))
            return key
        }

        /// As `nextKey`, for objects with known keys: the index of the key in `known`,
        /// `known.count` for any other key, nil after the closing brace. Keys are compared as
        /// bytes (no string is made unless the key has escapes).
        public mutating func nextKey(in known: [[UInt8]]) throws(ParseError) -> Int? {
            guard try nextMember() else { return nil }
            var found = known.count
            let bytes = reader.bytes
            let end = reader.stringBody(from: reader.index + 1).end
            if reader.index < bytes.count, bytes[reader.index] == UInt8(ascii: "\""), end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
                let start = reader.index + 1, length = end - start
                bytes.withUnsafeBufferPointer { buffer in
                    for (index, key) in known.enumerated() where key.count == length
                        && key.withUnsafeBufferPointer({ known in (0..<length).allSatisfy { known[$0] == buffer[start + $0] } }) {
                        found = index
                        break
                    }
                }
                reader.index = end + 1
            } else {
                let key = Array(try reader.string().utf8)
                found = known.firstIndex(of: key) ?? known.count
            }
            reader.skipSpace()
            try reader.expect(UInt8(ascii: ":"))
            return found
        }

        /// Steps to the next member's key (past a separator), or past the closing brace (false).
        mutating func nextMember() throws(ParseError) -> Bool {
            reader.skipSpace()
            if first {
                first = false
                if reader.index < reader.bytes.count, reader.bytes[reader.index] == UInt8(ascii: "}") { reader.index += 1; return false }
            } else if try reader.separatorEnds(UInt8(ascii: "}")) {
                return false
            }
            reader.skipSpace()
            return true
        }

        /// Whether the array entered last has another item (false after its closing bracket).
        public mutating func nextItem() throws(ParseError) -> Bool {
            reader.skipSpace()
            if first {
                first = false
                if reader.index < reader.bytes.count, reader.bytes[reader.index] == UInt8(ascii: "]") { reader.index += 1; return false }
                return true
            }
            return try !reader.separatorEnds(UInt8(ascii: "]"))
        }

        /// The next value, whole (for small values).
        public mutating func value() throws(ParseError) -> JSON { try reader.value(depth: 1) }

        /// The next value when it is a string (read); nil, with nothing read, when it is not.
        public mutating func string() throws(ParseError) -> String? {
            guard peek() == UInt8(ascii: "\"") else { return nil }
            return try reader.string()
        }

        public mutating func skipValue() throws(ParseError) { _ = try reader.value(depth: 1) } // duplicate keys refused too

        /// Only spaces may follow the document.
        public mutating func end() throws(ParseError) {
            reader.skipSpace()
            guard reader.index == reader.bytes.count else { throw reader.fail("trailing data") }
        }
    }

    // MARK: Writing

    /// Pretty-printed, two spaces per level, `"key" : value` — the layout docknfv's files have always had.
    public func rendered(capacity: Int = 4096) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(capacity)
        write(into: &out, indent: 0)
        out.append(0x0a)
        return out
    }

    /// On one line, without spaces (protocol output, e.g. a CNI result).
    public func compact() -> [UInt8] {
        var out: [UInt8] = []
        writeCompact(into: &out)
        return out
    }

    func writeCompact(into out: inout [UInt8]) {
        switch self {
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.quote(key, into: &out)
                out.append(UInt8(ascii: ":"))
                value.writeCompact(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                item.writeCompact(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        default: write(into: &out, indent: 0)
        }
    }

    func write(into out: inout [UInt8], indent: Int) {
        func pad(_ level: Int) { out.append(contentsOf: repeatElement(0x20, count: 2 * level)) }
        switch self {
        case .object(let members):
            if members.isEmpty { out += Array("{\n\n".utf8); pad(indent); out.append(UInt8(ascii: "}")); return }
            out += [UInt8(ascii: "{"), 0x0a]
            for (index, (key, value)) in members.enumerated() {
                pad(indent + 1)
                Self.quote(key, into: &out)
                out.append(0x20); out.append(UInt8(ascii: ":")); out.append(0x20)
                value.write(into: &out, indent: indent + 1)
                if index < members.count - 1 { out.append(UInt8(ascii: ",")) }
                out.append(0x0a)
            }
            pad(indent)
            out.append(UInt8(ascii: "}"))
        case .array(let items):
            if items.isEmpty { out += Array("[\n\n".utf8); pad(indent); out.append(UInt8(ascii: "]")); return }
            out += [UInt8(ascii: "["), 0x0a]
            for (index, item) in items.enumerated() {
                pad(indent + 1)
                item.write(into: &out, indent: indent + 1)
                if index < items.count - 1 { out.append(UInt8(ascii: ",")) }
                out.append(0x0a)
            }
            pad(indent)
            out.append(UInt8(ascii: "]"))
        case .string(let text): Self.quote(text, into: &out)
        case .number(let value): out += Array(String(value).utf8)
        case .decimal(let text): out += Array(text.utf8)
        case .bool(let value): out += Array((value ? "true" : "false").utf8)
        case .null: out += Array("null".utf8)
        }
    }

    static func quote(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most texts need no escaping: copy them whole (from the string's own storage).
        var text = text
        let plain: Bool = text.withUTF8 { bytes in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if plain {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0a: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x0d: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0..<0x20, 0x7f:
                let hex = Array(String(byte, radix: 16).utf8)
                out += Array("\\u00".utf8) + (hex.count == 1 ? [UInt8(ascii: "0")] : []) + hex
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

}
