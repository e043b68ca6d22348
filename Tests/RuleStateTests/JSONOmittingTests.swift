import Testing
import StateFiles
import TestSupport

/// `JSON.parse(_:omittingMembers:)` (a CNI DEL leaves the runtime config unbuilt) against the
/// whole parse: the same verdict on every input, and the same tree without the omitted member.
/// Seeded (`DOCKNFV_FUZZ_SEED`, printed), bounded in count.
@Suite("JSON: top-level members checked but not built")
struct JSONOmittingTests {
    static let document = #"""
    {"cniVersion":"1.0.0","name":"net","plugins":[1,2.5e3,-7],
     "runtimeConfig":{"netOutRules":[{"protocol":"tcp","networks":[{"start":"10.0.0.0","end":"10.0.0.255"}],
       "ports":[{"start":443,"end":443}],"log":true,"icmp_info":null,"note":"caf\u00e9 \"q\" é\n"}],
       "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"big":123456789012345678},
     "prevResult":{"ips":[{"address":"10.1.2.3/24"}]},"z":false}
    """#

    static func without(_ json: JSON, _ key: String) -> JSON {
        guard case .object(let members) = json else { return json }
        return .object(members.filter { $0.0 != key })
    }

    static func verdict(_ bytes: [UInt8], omitting: Set<String>?) -> Result<JSON, JSON.ParseError> {
        Result { () throws(JSON.ParseError) -> JSON in
            if let omitting { return try JSON.parse(bytes, omittingMembers: omitting) }
            return try JSON.parse(bytes)
        }
    }

    @Test("The omitted member is left out and everything else is the same")
    func sameTreeWithoutTheMember() throws {
        let bytes = Array(Self.document.utf8)
        let whole = try JSON.parse(bytes)
        #expect(whole["runtimeConfig"] != nil)
        let partial = try JSON.parse(bytes, omittingMembers: ["runtimeConfig"])
        #expect(partial == Self.without(whole, "runtimeConfig"))
        #expect(partial["runtimeConfig"] == nil)
        #expect(try JSON.parse(bytes, omittingMembers: ["absent"]) == whole)
    }

    @Test("Bad JSON inside the omitted member is still refused", arguments: [
        #"{"runtimeConfig":{"a":[1,2,}}"#, #"{"runtimeConfig":{"a":"unterminated}}"#, #"{"runtimeConfig":{"a":-}}"#,
        #"{"runtimeConfig":{"a":"\q"}}"#, #"{"runtimeConfig":{"a":tru}}"#, #"{"runtimeConfig":{"a":99999999999999999999}}"#,
        #"{"runtimeConfig":{"a" 1}}"#, #"{"runtimeConfig":[1 2]}"#, "{\"runtimeConfig\":\"\u{01}\"}", #"{"runtimeConfig":{}} x"#,
    ])
    func refused(text: String) {
        #expect(throws: JSON.ParseError.self) { try JSON.parse(Array(text.utf8), omittingMembers: ["runtimeConfig"]) }
        #expect(throws: JSON.ParseError.self) { try JSON.parse(Array(text.utf8)) }
    }

    @Test("Integers at Int's bounds and nesting at the depth limit get the same verdict either way", arguments: [
        ("9223372036854775807", true), ("-9223372036854775808", true), ("123456789012345678", true),
        ("9223372036854775808", false), ("-9223372036854775809", false), ("12345678901234567890", false),
        ("1e400", true), ("-0.5", true),
        (String(repeating: "[", count: 62) + String(repeating: "]", count: 62), true),
        (String(repeating: "[", count: 63) + String(repeating: "]", count: 63), false),
    ])
    func bounds(value: String, accepted: Bool) {
        // The value stands at depth 2: 62 nested arrays put the innermost at 63, the deepest allowed.
        let bytes = Array(#"{"runtimeConfig":{"a":\#(value)},"b":1}"#.utf8)
        #expect(((try? JSON.parse(bytes)) != nil) == accepted, "whole parse of \(value.prefix(30))")
        #expect(((try? JSON.parse(bytes, omittingMembers: ["runtimeConfig"])) != nil) == accepted, "omitting \(value.prefix(30))")
    }

    @Test("Invalid UTF-8 inside the omitted member is refused")
    func invalidUTF8() {
        let bytes = Array(#"{"runtimeConfig":{"a":""#.utf8) + [0xc3, 0x28] + Array(#""}}"#.utf8)
        #expect(throws: JSON.ParseError.self) { try JSON.parse(bytes, omittingMembers: ["runtimeConfig"]) }
    }

    @Test("Random mutations: the same verdict as the whole parse")
    func mutations() {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "JSON omitting", fallback: 121))
        let base = Array(Self.document.utf8)
        let alphabet = Array(#"{}[]:,"\ 0123456789.eE+-tfnulrsa"#.utf8) + [0x00, 0x1f, 0x80, 0xc3, 0xff]
        for _ in 0..<4_000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[at] = alphabet.randomElement(using: &rng)!
                case 1: bytes.remove(at: at)
                default: bytes.insert(alphabet.randomElement(using: &rng)!, at: at)
                }
            }
            let whole = Self.verdict(bytes, omitting: nil)
            let partial = Self.verdict(bytes, omitting: ["runtimeConfig"])
            switch (whole, partial) {
            case (.success(let a), .success(let b)):
                #expect(Self.without(a, "runtimeConfig") == b, "\(String(decoding: bytes, as: UTF8.self))")
            case (.failure, .failure): break
            case (.failure(let error), .success):
                // Only duplicate keys inside the omitted member may pass unnoticed.
                #expect(error.reason.hasPrefix("duplicate key"), "\(error): \(String(decoding: bytes, as: UTF8.self))")
            case (.success, .failure(let error)):
                Issue.record("refused only when omitting: \(error): \(String(decoding: bytes, as: UTF8.self))")
            }
        }
    }
}
