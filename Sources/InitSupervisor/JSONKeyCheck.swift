import Foundation

/// What JSONDecoder lets through in docknfv-init's config: a key given twice in one object (the
/// decoder keeps one silently) and `null` for a field (read as "absent", i.e. the default). Both
/// are refused, naming the field. Malformed JSON is left to JSONDecoder, which reports it.
enum JSONKeyCheck {
    static func check(_ data: Data, path: String) throws(InitConfigError) {
        var scanner = Scanner(bytes: Array(data), path: path)
        do { try scanner.value(field: "") } catch let error as InitConfigError { throw error.inFile(path) } catch {}
    }

    struct Malformed: Error {}

    struct Scanner {
        let bytes: [UInt8]
        let path: String
        var index = 0

        mutating func value(field: String) throws {
            skipSpace()
            guard index < bytes.count else { throw Malformed() }
            switch bytes[index] {
            case UInt8(ascii: "{"): try object(field: field)
            case UInt8(ascii: "["):
                index += 1
                var position = 0
                skipSpace()
                if peek(UInt8(ascii: "]")) { index += 1; return }
                while true {
                    try value(field: "\(field)[\(position)]")
                    position += 1
                    skipSpace()
                    if peek(UInt8(ascii: "]")) { index += 1; return }
                    try expect(UInt8(ascii: ","))
                }
            case UInt8(ascii: "\""): _ = try string()
            default: // number or literal
                while index < bytes.count, !" \t\r\n,]}".utf8.contains(bytes[index]) { index += 1 }
            }
        }

        mutating func object(field: String) throws {
            index += 1
            var keys: Set<String> = []
            skipSpace()
            if peek(UInt8(ascii: "}")) { index += 1; return }
            while true {
                skipSpace()
                let key = try string()
                let name = field.isEmpty ? key : field + "." + key
                skipSpace()
                try expect(UInt8(ascii: ":"))
                skipSpace()
                guard keys.insert(key).inserted else {
                    throw InitConfigError.invalid(field: name, value: "", reason: "given more than once")
                }
                if bytes[index...].starts(with: "null".utf8), index + 4 == bytes.count || " \t\r\n,}".utf8.contains(bytes[index + 4]) {
                    throw InitConfigError.invalid(field: name, value: "null (\(path))", reason: "null is not a value; leave the field out for the default")
                }
                try value(field: name)
                skipSpace()
                if peek(UInt8(ascii: "}")) { index += 1; return }
                try expect(UInt8(ascii: ","))
            }
        }

        /// A string token, escapes decoded (so `"mo\u0064e"` is the key `mode`).
        mutating func string() throws -> String {
            try expect(UInt8(ascii: "\""))
            var utf8: [UInt8] = []
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if byte == UInt8(ascii: "\"") { return String(decoding: utf8, as: UTF8.self) }
                guard byte == UInt8(ascii: "\\") else { utf8.append(byte); continue }
                guard index < bytes.count else { throw Malformed() }
                let escape = bytes[index]
                index += 1
                let simple: [UInt8: UInt8] = [UInt8(ascii: "n"): 10, UInt8(ascii: "t"): 9, UInt8(ascii: "r"): 13,
                                              UInt8(ascii: "b"): 8, UInt8(ascii: "f"): 12]
                if escape != UInt8(ascii: "u") { utf8.append(simple[escape] ?? escape); continue }
                var unit = try hex4()
                if (0xD800..<0xDC00).contains(unit), bytes[index...].starts(with: "\\u".utf8) {
                    index += 2
                    let low = try hex4()
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low &- 0xDC00)
                }
                utf8.append(contentsOf: String(Unicode.Scalar(unit) ?? "\u{FFFD}").utf8)
            }
            throw Malformed()
        }

        mutating func hex4() throws -> UInt32 {
            guard index + 4 <= bytes.count, let unit = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
                throw Malformed()
            }
            index += 4
            return unit
        }

        mutating func skipSpace() {
            while index < bytes.count, " \t\r\n".utf8.contains(bytes[index]) { index += 1 }
        }

        func peek(_ byte: UInt8) -> Bool { index < bytes.count && bytes[index] == byte }

        mutating func expect(_ byte: UInt8) throws {
            guard peek(byte) else { throw Malformed() }
            index += 1
        }
    }
}
