import NetTypes

/// One RFC 3442 classless static route. A nil gateway (0.0.0.0 on the wire) means the destination
/// is on-link: reached directly through the interface.
public struct ClasslessRoute: Sendable, Hashable, CustomStringConvertible {
    public var destination: IPPrefix
    public var gateway: IPAddress?

    public init(destination: IPPrefix, gateway: IPAddress?) {
        self.destination = destination
        self.gateway = gateway
    }

    public var description: String {
        "\(destination.isDefault ? "default" : destination.description)" + (gateway.map { " via \($0)" } ?? " on-link")
    }
}

/// The result of decoding: the routes, and notes about input that was accepted but adjusted.
public struct DecodedRoutes: Sendable, Equatable {
    public var routes: [ClasslessRoute]
    public var warnings: [String]
}

/// Decoding errors. Each names the token (1-based position in the octet list) or the route.
public enum ClasslessRouteError: Error, Equatable, CustomStringConvertible {
    case notAnOctet(position: Int, token: String)
    case prefixTooLong(position: Int, length: Int)
    case truncated(position: Int, expected: Int, available: Int)

    public var description: String {
        switch self {
        case .notAnOctet(let position, let token):
            // A hostile lease may carry a huge token: echo a bounded, printable part of it.
            let shown = token.unicodeScalars.prefix(20).map { $0.value < 0x20 || $0.value == 0x7f || $0 == "\"" ? "?" : String($0) }.joined()
            return "token \(position) \"\(shown)\(token.unicodeScalars.count > 20 ? "…" : "")\" is not a decimal octet (0-255)"
        case .prefixTooLong(let position, let length):
            return "token \(position): prefix length \(length) is above 32"
        case .truncated(let position, let expected, let available):
            return "route starting at token \(position) is truncated: needs \(expected) octets, only \(available) left"
        }
    }
}

/// Decodes dhclient's rendering of option 121 (and Microsoft's 249, same encoding): decimal octets
/// separated by spaces — for each route a prefix length, the ceil(length/8) significant octets of
/// the destination, then four gateway octets.
///
/// Host bits: when the significant octets carry bits beyond the prefix length (e.g. `20 10 1 17`,
/// which reads 10.1.17.0/20), the route is accepted with those bits cleared (10.1.16.0/20) and a
/// warning says so. The kernel refuses such prefixes as given, and the bits carry no meaning in a
/// route; rejecting the whole lease for them would drop every other route the server sent.
public enum ClasslessRouteDecoder {
    public static func decode(_ text: String) throws(ClasslessRouteError) -> DecodedRoutes {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "," })
        var octets: [UInt8] = []
        octets.reserveCapacity(tokens.count)
        for (index, token) in tokens.enumerated() {
            guard !token.isEmpty, token.count <= 3, token.allSatisfy({ ("0"..."9").contains($0) }),
                  let value = Int(token), value <= 255 else {
                throw .notAnOctet(position: index + 1, token: String(token))
            }
            octets.append(UInt8(value))
        }
        var routes: [ClasslessRoute] = []
        var warnings: [String] = []
        var seen: Set<IPPrefix> = []
        var index = 0
        while index < octets.count {
            let position = index + 1
            let length = Int(octets[index])
            guard length <= 32 else { throw .prefixTooLong(position: position, length: length) }
            let significant = (length + 7) / 8
            let needed = 1 + significant + 4
            guard octets.count - index >= needed else {
                throw .truncated(position: position, expected: needed, available: octets.count - index)
            }
            var destination = [UInt8](repeating: 0, count: 4)
            for offset in 0..<significant { destination[offset] = octets[index + 1 + offset] }
            let gatewayOctets = Array(octets[(index + 1 + significant)..<(index + needed)])
            let raw = IPPrefix(address: IPAddress(family: .v4, bytes: destination)!, length: length)!
            if raw.hasHostBits {
                warnings.append("route at token \(position): \(raw) has bits set beyond /\(length); using \(raw.network)")
            }
            let gateway = gatewayOctets == [0, 0, 0, 0] ? nil : IPAddress(family: .v4, bytes: gatewayOctets)
            let route = ClasslessRoute(destination: raw.network, gateway: gateway)
            if !seen.insert(route.destination).inserted {
                warnings.append("route at token \(position): duplicate destination \(route.destination); keeping the first")
            } else {
                routes.append(route)
            }
            index += needed
        }
        return DecodedRoutes(routes: routes, warnings: warnings)
    }
}
