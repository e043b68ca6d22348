import Testing
import NetTypes
import TestSupport
@testable import Rules
#if canImport(Glibc)
import Glibc
#endif

/// The byte-level fast paths on the rule and state hot paths, against the slower reference each
/// replaced (inet_ntop, Character-wise trimming and splitting).
@Suite("Text fast paths")
struct TextFastPathTests {
    /// What inet_ntop prints for an IPv4 address.
    static func ntop(_ bytes: [UInt8]) -> String {
        var raw = in_addr()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        _ = inet_ntop(AF_INET, &raw, &buffer, socklen_t(buffer.count))
        return String(cString: buffer)
    }

    @Test("IPv4 addresses print as inet_ntop prints them, every octet value in every place")
    func ipv4Description() {
        for value in 0...255 {
            let octet = UInt8(value)
            for place in 0..<4 {
                var bytes: [UInt8] = [10, 0, 200, 9]
                bytes[place] = octet
                let address = IPAddress(family: .v4, bytes: bytes)!
                #expect(address.description == Self.ntop(bytes))
                #expect(IPAddress(address.description) == address)
            }
        }
        #expect(IPAddress(family: .v4, bytes: [255, 255, 255, 255])!.description == "255.255.255.255")
        #expect(IPAddress(family: .v4, bytes: [0, 0, 0, 0])!.description == "0.0.0.0")
        #expect(IPAddress("2001:db8::1")!.description == "2001:db8::1")
        #expect(IPAddress("::ffff:10.1.2.3")!.description == "::ffff:10.1.2.3")
    }

    /// What inet_pton(AF_INET) reads from `text`, or nil.
    static func pton(_ text: String) -> [UInt8]? {
        var raw = in_addr()
        guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
        return withUnsafeBytes(of: &raw) { Array($0) }
    }

    @Test("IPv4 addresses parse exactly as inet_pton parses them (seeded: DOCKNFV_FUZZ_SEED)")
    func ipv4Parsing() {
        let fixed = ["0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04", "00.1.2.3", "256.1.1.1", "1.2.3", "1.2.3.4.5",
                     " 1.2.3.4", "1.2.3.4 ", "1.2.3.4x", "1..2.3", ".1.2.3", "1.2.3.", "10.0.0.1", "1.2.3.255", "1.2.3.2555",
                     "", "1", "1.2.3.-4", "+1.2.3.4", "1.2.3.4/24", "١.2.3.4"]
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "ipv4 parsing", fallback: 3442))
        let alphabet = Array("0123456789.0123456789.x 0")
        var texts = fixed
        for _ in 0..<20_000 {
            let length = Int.random(in: 1...16, using: &rng)
            texts.append(String((0..<length).map { _ in alphabet.randomElement(using: &rng)! }))
        }
        for text in texts {
            #expect(IPAddress(text)?.bytes == Self.pton(text), "\(text)")
            if let address = IPAddress(text) { #expect(address.family == .v4) }
        }
    }

    @Test("Trimming ASCII characters keeps everything else, multi-byte characters included", arguments: [
        ("  -A FORWARD -j ACCEPT\t\r", " \t\r", "-A FORWARD -j ACCEPT"),
        ("\r\n", " \t\r\n", ""),
        ("", " ", ""),
        ("   ", " ", ""),
        (" é ", " ", "é"),
        ("\t-j ACCEPT -m comment --comment \"ü \"\r", " \t\r", "-j ACCEPT -m comment --comment \"ü \""),
        ("x", " ", "x"),
    ])
    func trimming(text: String, set: String, expected: String) {
        #expect(text.trimming(set) == expected)
        #expect(Substring(text).trimming(set) == expected)
    }

    @Test("Fields split at every separator and keep empty fields, as split(omittingEmptySubsequences: false) did", arguments: [
        "10.0.0.1,10.0.0.2", ",", "a,,b,", "1:2:3", "ü,é", "", "80",
    ])
    func fields(text: String) {
        for separator in [",", ":", "/"] {
            let old = text.split(separator: Character(separator), omittingEmptySubsequences: false).map(String.init)
            #expect(Tokenizer.fields(text, Unicode.Scalar(separator)!) == old)
            let once = text.split(separator: Character(separator), maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            #expect(Tokenizer.fields(text, Unicode.Scalar(separator)!, maxSplits: 1) == once)
        }
    }

    /// The tokenizer as it was before tokens were sliced straight from the bytes.
    static func referenceSplit(_ text: String, singleQuotes: Bool) -> [String]? {
        var tokens: [String] = [], current: [UInt8] = []
        var inToken = false, quote: UInt8 = 0, escaped = false
        for byte in text.utf8 {
            if escaped { current.append(byte); escaped = false; continue }
            if byte == 0x5c && quote != 0x27 { escaped = true; inToken = true; continue }
            if quote != 0 { if byte == quote { quote = 0 } else { current.append(byte) }; continue }
            if byte == 0x22 || (byte == 0x27 && singleQuotes) { quote = byte; inToken = true; continue }
            if byte == 0x20 || byte == 0x09 || byte == 0x0a {
                if inToken { tokens.append(String(decoding: current, as: UTF8.self)); current.removeAll(); inToken = false }
                continue
            }
            current.append(byte)
            inToken = true
        }
        if quote != 0 || escaped { return nil }
        if inToken { tokens.append(String(decoding: current, as: UTF8.self)) }
        return tokens
    }

    @Test("Tokens split as before, quotes, escapes and UTF-8 included (seeded: DOCKNFV_FUZZ_SEED)")
    func tokenizer() {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "tokenizer", fallback: 1066))
        let pieces = ["-p", "tcp", " ", "  ", "\t", "\n", "\"", "'", "\\", "a b", "é", "x", "--comment", "\"\"", "''", "-j", "ACCEPT", "\\\""]
        var texts = ["", " ", "a", "\"a b\" c", "a\\ b", "'it''s'", "\"unterminated", "trailing\\", "x\"y z\"w", "é 'ü x'"]
        for _ in 0..<20_000 {
            texts.append((0..<Int.random(in: 1...8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined())
        }
        for text in texts {
            for singleQuotes in [true, false] {
                let split = try? Tokenizer.split(text, rule: text, singleQuotes: singleQuotes)
                #expect(split == Self.referenceSplit(text, singleQuotes: singleQuotes), "\(text) singleQuotes \(singleQuotes)")
            }
        }
    }

    @Test("Save-file lines split and trimmed as before (seeded: DOCKNFV_FUZZ_SEED)")
    func saveFileLines() {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "save file lines", fallback: 1210))
        let pieces = ["\n", "\r\n", " ", "\t", "\r", "-A FORWARD", "*filter", "é", "x", "COMMIT", "\n\n"]
        var texts = ["", "\n", "a", "a\n", "\r\n\r\n", " \t a \r\n b"]
        for _ in 0..<5_000 {
            texts.append((0..<Int.random(in: 1...10, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined())
        }
        for text in texts {
            let old = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                .map { String(decoding: $0, as: UTF8.self).trimming(" \t\r") }
            #expect(SaveFileReader.lines(text) == old, "\(text.debugDescription)")
        }
    }

    @Test("Words joined by single spaces, as joined(separator:) does", arguments: [[String](), [""], ["a"], ["", "x"], ["-p", "tcp", "", "-j", "ACCEPT"]])
    func joinWords(words: [String]) {
        #expect(Tokenizer.joinWords(words) == words.joined(separator: " "))
    }

    @Test("Only ASCII digits are decimal")
    func decimal() {
        #expect(Tokenizer.isDecimal("0123456789"))
        #expect(!Tokenizer.isDecimal("12a"))
        #expect(!Tokenizer.isDecimal("١٢")) // Arabic-Indic digits: Character.isNumber, not a port
        #expect(Tokenizer.isDecimal("")) // callers check emptiness first
    }
}
