import Testing
import DHCPRoutes
import NetTypes
import TestSupport

/// Encodes routes the way a DHCP server sends option 121 and dhclient prints it.
func encode(_ routes: [(prefix: IPPrefix, gateway: [UInt8])]) -> String {
    var octets: [UInt8] = []
    for route in routes {
        octets.append(UInt8(route.prefix.length))
        octets += route.prefix.address.bytes.prefix((route.prefix.length + 7) / 8)
        octets += route.gateway
    }
    return octets.map(String.init).joined(separator: " ")
}

@Suite("RFC 3442 decoder")
struct ClasslessRouteDecoderTests {
    @Test func rfcExample() throws {
        // 192.168.10.0/24 via 192.168.1.1, 10.0.0.0/8 via 10.10.17.66 (the Debian hook's example, corrected)
        let decoded = try ClasslessRouteDecoder.decode("24 192 168 10 192 168 1 1 8 10 10 10 17 66")
        #expect(decoded.routes.map(\.description) == ["192.168.10.0/24 via 192.168.1.1", "10.0.0.0/8 via 10.10.17.66"])
        #expect(decoded.warnings.isEmpty)
    }

    @Test func defaultAndHostAndOnLinkRoutes() throws {
        let decoded = try ClasslessRouteDecoder.decode("0 10 1 0 1 32 192 0 2 9 0 0 0 0 25 198 51 100 128 10 1 0 1")
        #expect(decoded.routes.map(\.description) == ["default via 10.1.0.1", "192.0.2.9/32 on-link", "198.51.100.128/25 via 10.1.0.1"])
    }

    @Test func emptyInputIsNoRoutes() throws {
        #expect(try ClasslessRouteDecoder.decode("").routes.isEmpty)
        #expect(try ClasslessRouteDecoder.decode("   ").routes.isEmpty)
    }

    /// Decided: bits beyond the prefix length are cleared, with a warning naming the route.
    @Test func hostBitsBeyondThePrefixAreClearedWithAWarning() throws {
        let decoded = try ClasslessRouteDecoder.decode("20 10 1 17 10 1 0 1")
        #expect(decoded.routes.map(\.description) == ["10.1.16.0/20 via 10.1.0.1"])
        #expect(decoded.warnings == ["route at token 1: 10.1.17.0/20 has bits set beyond /20; using 10.1.16.0/20"])
    }

    @Test func duplicateDestinationKeepsTheFirst() throws {
        let decoded = try ClasslessRouteDecoder.decode("24 10 9 0 10 1 0 1 24 10 9 0 10 1 0 2")
        #expect(decoded.routes.map(\.description) == ["10.9.0.0/24 via 10.1.0.1"])
        #expect(decoded.warnings.count == 1)
    }

    @Test(arguments: [
        ("24 10 1", ClasslessRouteError.truncated(position: 1, expected: 8, available: 3)),
        ("24 10 1 0 10 1 0", .truncated(position: 1, expected: 8, available: 7)),
        ("24 10 1 0 10 1 0 1 8", .truncated(position: 9, expected: 6, available: 1)),
        ("33 10 1 0 0 10 1 0 1", .prefixTooLong(position: 1, length: 33)),
        ("24 10 1 0 10 1 0 x", .notAnOctet(position: 8, token: "x")),
        ("24 10 1 256 10 1 0 1", .notAnOctet(position: 4, token: "256")),
        ("24 10 1 -1 10 1 0 1", .notAnOctet(position: 4, token: "-1")),
        ("24 10 1 +1 10 1 0 1", .notAnOctet(position: 4, token: "+1")),
        ("24 10 1 0x1 10 1 0 1", .notAnOctet(position: 4, token: "0x1")),
        ("24 10 1 1000 10 1 0 1", .notAnOctet(position: 4, token: "1000")),
    ])
    func badInputNamesTheToken(text: String, error: ClasslessRouteError) {
        #expect(throws: error) { try ClasslessRouteDecoder.decode(text) }
    }

    @Test func errorTextsNameThePart() {
        #expect(ClasslessRouteError.notAnOctet(position: 4, token: "abc").description == "token 4 \"abc\" is not a decimal octet (0-255)")
        #expect(ClasslessRouteError.prefixTooLong(position: 1, length: 40).description == "token 1: prefix length 40 is above 32")
    }

    /// Property: any list of well-formed routes survives encode → decode unchanged. Seeded
    /// (`DOCKNFV_FUZZ_SEED`, printed).
    @Test func roundTripOfRandomRoutes() throws {
        let seed = SeededGenerator.seed(for: "option 121 round trip", fallback: 3442)
        var generator = SeededGenerator(seed: seed)
        for _ in 0..<2000 {
            var routes: [(prefix: IPPrefix, gateway: [UInt8])] = []
            var seen = Set<IPPrefix>()
            for _ in 0..<Int.random(in: 0...6, using: &generator) {
                let length = Int.random(in: 0...32, using: &generator)
                let bytes = (0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let prefix = IPPrefix(address: IPAddress(family: .v4, bytes: bytes)!, length: length)!.network
                guard seen.insert(prefix).inserted else { continue }
                let gateway = Bool.random(using: &generator) ? [0, 0, 0, 0] : (0..<4).map { _ in UInt8.random(in: 1...254, using: &generator) }
                routes.append((prefix, gateway))
            }
            let text = encode(routes)
            let decoded = try ClasslessRouteDecoder.decode(text)
            #expect(decoded.warnings.isEmpty, "\(text) (DOCKNFV_FUZZ_SEED=\(seed))")
            #expect(decoded.routes.count == routes.count, "\(text) (DOCKNFV_FUZZ_SEED=\(seed))")
            for (got, want) in zip(decoded.routes, routes) {
                #expect(got.destination == want.prefix, "\(text) (DOCKNFV_FUZZ_SEED=\(seed))")
                #expect(got.gateway == (want.gateway == [0, 0, 0, 0] ? nil : IPAddress(family: .v4, bytes: want.gateway)), "\(text) (DOCKNFV_FUZZ_SEED=\(seed))")
            }
        }
    }

    /// Fuzz: random octet strings never crash, and acceptance matches an independent reading of
    /// the structure (every route complete, every prefix ≤ 32). Seeded (`DOCKNFV_FUZZ_SEED`, printed).
    @Test func randomOctetStringsAreAcceptedOrRejectedConsistently() {
        let seed = SeededGenerator.seed(for: "option 121 fuzz", fallback: 121)
        var generator = SeededGenerator(seed: seed)
        for _ in 0..<20000 {
            let count = Int.random(in: 0...40, using: &generator)
            let octets = (0..<count).map { _ in
                Bool.random(using: &generator) ? UInt8.random(in: 0...40, using: &generator) : UInt8.random(in: 0...255, using: &generator)
            }
            let text = octets.map(String.init).joined(separator: " ")
            var valid = true, index = 0, routeCount = 0
            while index < octets.count {
                let length = Int(octets[index])
                if length > 32 { valid = false; break }
                let needed = 1 + (length + 7) / 8 + 4
                if octets.count - index < needed { valid = false; break }
                index += needed
                routeCount += 1
            }
            do {
                let decoded = try ClasslessRouteDecoder.decode(text)
                #expect(valid, "accepted \(text) (DOCKNFV_FUZZ_SEED=\(seed))")
                #expect(decoded.routes.count + decoded.warnings.filter { $0.contains("duplicate") }.count == routeCount, "\(text) (DOCKNFV_FUZZ_SEED=\(seed))")
                #expect(decoded == (try ClasslessRouteDecoder.decode(text)))
            } catch {
                #expect(!valid, "rejected \(text): \(error) (DOCKNFV_FUZZ_SEED=\(seed))")
            }
        }
    }

    @Test func leaseRoutesPreferOption121AndFallBackTo249() throws {
        let both = try LeaseRoutes.from(environment: ["new_rfc3442_classless_static_routes": "24 10 9 0 10 1 0 1",
                                                      "new_ms_classless_static_routes": "24 10 8 0 10 1 0 1"])
        #expect(both.source == .rfc3442)
        #expect(both.routes.map(\.description) == ["10.9.0.0/24 via 10.1.0.1"])
        let ms = try LeaseRoutes.from(environment: ["new_ms_classless_static_routes": "24 10 8 0 10 1 0 1"])
        #expect(ms.source == .microsoft)
        let none = try LeaseRoutes.from(environment: [:])
        #expect(none.source == .none && none.routes.isEmpty)
        #expect(throws: LeaseError.invalid(variable: "new_rfc3442_classless_static_routes", error: .prefixTooLong(position: 1, length: 99))) {
            try LeaseRoutes.from(environment: ["new_rfc3442_classless_static_routes": "99 1 2 3 4"])
        }
    }

    @Test func pushFileRendering() throws {
        let routes = try ClasslessRouteDecoder.decode("0 10 1 0 1 24 192 168 50 10 1 0 1 16 10 20 10 1 0 1 32 192 0 2 9 0 0 0 0").routes
        let text = OpenVPNPushConfig.render(routes: routes, redirectGateway: false, interface: "eth1", source: .rfc3442)
        #expect(text.split(separator: "\n").dropFirst().map(String.init) == [
            "push \"route 192.168.50.0 255.255.255.0\"", "push \"route 10.20.0.0 255.255.0.0\"",
            "push \"route 192.0.2.9 255.255.255.255\"",
        ])
        let redirect = OpenVPNPushConfig.render(routes: routes, redirectGateway: true, interface: "eth1", source: .rfc3442)
        #expect(redirect.hasSuffix("push \"redirect-gateway def1\"\n"))
        #expect(text == OpenVPNPushConfig.render(routes: routes, redirectGateway: false, interface: "eth1", source: .rfc3442))
        #expect(!OpenVPNPushConfig.empty(interface: "eth1", reason: "EXPIRE").contains("push \""))
    }

    @Test(arguments: [("BOUND", HookAction.publish), ("RENEW", .publish), ("REBIND", .publish), ("REBOOT", .publish),
                      ("EXPIRE", .withdraw), ("FAIL", .withdraw), ("RELEASE", .withdraw), ("STOP", .withdraw),
                      ("PREINIT", .ignore), ("BOUND6", .ignore)])
    func reasons(reason: String, action: HookAction) {
        #expect(DHCPReason.action(for: reason) == action)
    }

    @Test func unknownReason() {
        #expect(DHCPReason.action(for: "BOUNDX") == nil)
        #expect(DHCPReason.action(for: "bound") == nil)
    }
}
