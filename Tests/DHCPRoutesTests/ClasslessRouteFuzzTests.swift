import Foundation
import Testing
import DHCPRoutes
import NetTypes
import TestSupport

/// Issue 8 (tests): the option-121 decoder fed random bytes and random token sequences. Every input
/// is refused with a `ClasslessRouteError` whose message is short and names a token that exists,
/// or accepted, and then its routes encoded again (by an encoder written here, from RFC 3442),
/// decoded to the same routes and rendered into the same push file. Seeded (`DOCKNFV_FUZZ_SEED`,
/// printed), bounded by a count (`DOCKNFV_FUZZ_COUNT`) and a time budget.
@Suite("Option 121 decoder fuzz (issue 8)")
struct ClasslessRouteFuzzTests {
    var count: Int { ProcessInfo.processInfo.environment["DOCKNFV_FUZZ_COUNT"].flatMap { Int($0) } ?? 10_000 }
    let budget: Duration = .seconds(10)

    /// RFC 3442's encoding: the prefix length, its significant octets, the gateway (0.0.0.0: on-link).
    func encode(_ routes: [ClasslessRoute]) -> String {
        routes.flatMap { route -> [UInt8] in
            let length = route.destination.length
            return [UInt8(length)] + route.destination.address.bytes.prefix((length + 7) / 8) + (route.gateway?.bytes ?? [0, 0, 0, 0])
        }.map(String.init).joined(separator: " ")
    }

    func check(_ text: String, label: @autoclosure () -> String) {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "," }).count
        let decoded: DecodedRoutes
        do {
            decoded = try ClasslessRouteDecoder.decode(text)
        } catch {
            let position: Int
            switch error {
            case .notAnOctet(let p, _), .prefixTooLong(let p, _), .truncated(let p, _, _): position = p
            }
            #expect((1...max(1, tokens)).contains(position), "\(label()): \(error) names token \(position) of \(tokens)")
            #expect(error.description.utf8.count < 200, "\(label()): a \(error.description.utf8.count)-byte message")
            return
        }
        let encoded = encode(decoded.routes)
        do {
            let again = try ClasslessRouteDecoder.decode(encoded)
            #expect(again.routes == decoded.routes, "\(label()): \(encoded) decodes to \(again.routes), not \(decoded.routes)")
            #expect(again.warnings.isEmpty, "\(label()): \(again.warnings)")
            for redirect in [false, true] {
                #expect(OpenVPNPushConfig.render(routes: again.routes, redirectGateway: redirect, interface: "eth1", source: .rfc3442)
                        == OpenVPNPushConfig.render(routes: decoded.routes, redirectGateway: redirect, interface: "eth1", source: .rfc3442), "\(label())")
            }
        } catch {
            Issue.record("\(label()): accepted, but its routes encoded as \(encoded) are refused: \(error)")
        }
    }

    @Test func randomBytes() {
        let seed = SeededGenerator.seed(for: "option 121 random bytes", fallback: 3_442_121)
        var random = SeededGenerator(seed: seed)
        let alphabet = Array("0123456789 ,\t\n".utf8)
        let start = ContinuousClock.now
        for round in 0..<count where ContinuousClock.now - start < budget {
            let bytes: [UInt8] = (0..<Int.random(in: 0...60, using: &random)).map { _ in
                random.next() % 4 == 0 ? UInt8.random(in: 0...255, using: &random) : alphabet.randomElement(using: &random)!
            }
            check(String(decoding: bytes, as: UTF8.self), label: "seed \(seed) round \(round) bytes \(bytes)")
        }
    }

    @Test func randomTokenSequences() {
        let seed = SeededGenerator.seed(for: "option 121 token sequences", fallback: 249)
        var random = SeededGenerator(seed: seed)
        let odd = ["", "-1", "+1", "007", "0x1", "1e2", "256", "999", "1000", "33", "\u{661}", "1\u{301}", "٣", "½", "1.0", "00000000000000000001",
                   String(repeating: "9", count: 5_000), "\u{0}", "\"", "abc"]
        let separators = [" ", " ", " ", ",", "\t", "\n", "  ", ", "]
        let start = ContinuousClock.now
        for round in 0..<count where ContinuousClock.now - start < budget {
            let tokens = (0..<Int.random(in: 0...30, using: &random)).map { _ -> String in
                switch random.next() % 8 {
                case 0: return odd.randomElement(using: &random)!
                case 1, 2: return String(Int.random(in: 0...32, using: &random))
                default: return String(Int.random(in: 0...255, using: &random))
                }
            }
            let text = tokens.map { $0 + separators.randomElement(using: &random)! }.joined()
            check(text, label: "seed \(seed) round \(round) tokens \(tokens.map { $0.prefix(30) })")
        }
    }

    /// Found by it: a 100 KB token came back whole in the message.
    @Test func aHugeTokenIsNotEchoedBack() {
        #expect { _ = try ClasslessRouteDecoder.decode("24 10 " + String(repeating: "9", count: 100_000)) } throws: { error in
            let text = String(describing: error)
            return text.utf8.count < 100 && text.hasPrefix("token 3 \"99999999999999999999…\"")
        }
    }
}
