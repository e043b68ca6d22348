#if canImport(Glibc)
import Glibc
#endif

/// An address family: IPv4 or IPv6.
public enum IPFamily: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case v4 = "ipv4"
    case v6 = "ipv6"

    /// The `AF_*` constant.
    public var addressFamily: Int32 { self == .v4 ? AF_INET : AF_INET6 }
    public var byteCount: Int { self == .v4 ? 4 : 16 }
    public var bitCount: Int { byteCount * 8 }
    public var description: String { rawValue }

    public init?(addressFamily: Int32) {
        switch addressFamily {
        case AF_INET: self = .v4
        case AF_INET6: self = .v6
        default: return nil
        }
    }
}

/// An IPv4 or IPv6 address held as network-order bytes.
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public let family: IPFamily
    /// 4 or 16 bytes, network order.
    public let bytes: [UInt8]

    public init?(family: IPFamily, bytes: [UInt8]) {
        guard bytes.count == family.byteCount else { return nil }
        self.family = family
        self.bytes = bytes
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (no prefix, no zone).
    public init?(_ text: String) {
        // Dotted quads by hand, exactly what inet_pton(AF_INET) accepts (four decimal octets of
        // 0–255 without leading zeros, nothing else): configs, state files and set elements hold
        // thousands, and the C call costs a C string and a copy each.
        if let bytes = Self.dottedQuad(text.utf8) {
            self.family = .v4
            self.bytes = bytes
            return
        }
        if text.utf8.contains(UInt8(ascii: ":")) {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            self.family = .v6
            self.bytes = withUnsafeBytes(of: &raw) { Array($0) }
        } else {
            // inet_pton(AF_INET) accepts exactly four decimal octets, no leading junk.
            var raw = in_addr()
            guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
            self.family = .v4
            self.bytes = withUnsafeBytes(of: &raw) { Array($0) }
        }
    }

    /// The four octets of a dotted quad, or nil for anything inet_pton(AF_INET) would refuse.
    static func dottedQuad(_ utf8: String.UTF8View) -> [UInt8]? {
        guard utf8.count >= 7, utf8.count <= 15 else { return nil }
        var octets: [UInt8] = []
        octets.reserveCapacity(4)
        var value = 0, digits = 0
        for byte in utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, octets.count < 3 else { return nil }
                octets.append(UInt8(value))
                value = 0; digits = 0
            } else if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                guard !(digits == 1 && value == 0) else { return nil } // a leading zero
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                guard value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets.count == 3 else { return nil }
        octets.append(UInt8(value))
        return octets
    }

    public var description: String {
        // IPv4 by hand: inet_ntop formats through sprintf, and rule texts, set elements and state
        // files print thousands of addresses (a CNI ADD with 1,000 ASG networks spent a sixth of
        // its instructions there).
        if family == .v4, bytes.count == 4 {
            return String(unsafeUninitializedCapacity: 15) { out in
                var count = 0
                for (i, byte) in bytes.enumerated() {
                    if i > 0 { out[count] = UInt8(ascii: "."); count += 1 }
                    if byte >= 100 { out[count] = UInt8(ascii: "0") + byte / 100; count += 1 }
                    if byte >= 10 { out[count] = UInt8(ascii: "0") + byte / 10 % 10; count += 1 }
                    out[count] = UInt8(ascii: "0") + byte % 10; count += 1
                }
                return count
            }
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        return bytes.withUnsafeBytes { raw in
            guard inet_ntop(family.addressFamily, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil else {
                return "?"
            }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public static func zero(_ family: IPFamily) -> IPAddress {
        IPAddress(family: family, bytes: [UInt8](repeating: 0, count: family.byteCount))!
    }

    /// fe80::/10.
    public var isIPv6LinkLocal: Bool { family == .v6 && bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80 }
    /// 169.254.0.0/16.
    public var isIPv4LinkLocal: Bool { family == .v4 && bytes[0] == 169 && bytes[1] == 254 }
    public var isLinkLocal: Bool { isIPv4LinkLocal || isIPv6LinkLocal }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.family != rhs.family { return lhs.family == .v4 }
        return lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    /// The address with every bit past `length` cleared.
    public func masked(to length: Int) -> IPAddress {
        var out = bytes
        for index in out.indices {
            let bitsBefore = index * 8
            if bitsBefore >= length { out[index] = 0 }
            else if bitsBefore + 8 > length {
                let keep = length - bitsBefore
                out[index] &= UInt8(truncatingIfNeeded: 0xff << (8 - keep))
            }
        }
        return IPAddress(family: family, bytes: out)!
    }
}

/// A network prefix such as `10.1.0.0/24` or `::/0`. The address is kept as given;
/// `network` clears the host bits.
public struct IPPrefix: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public let address: IPAddress
    public let length: Int

    public init?(address: IPAddress, length: Int) {
        guard (0...address.family.bitCount).contains(length) else { return nil }
        self.address = address
        self.length = length
    }

    /// Parses `ADDR/LEN`; a bare address is a host prefix (/32 or /128).
    /// The word `default` means 0.0.0.0/0 unless `family` says otherwise.
    public init?(_ text: String) { self.init(text, family: nil) }

    public init?(_ text: String, family: IPFamily?) {
        if text == "default" {
            self = IPPrefix.default(family ?? .v4)
            return
        }
        // Byte-wise: configs and state files hold thousands of these.
        let utf8 = text.utf8
        let slash = utf8.firstIndex(of: UInt8(ascii: "/"))
        guard let address = IPAddress(slash.map { String(text[..<$0]) } ?? text) else { return nil }
        if let family, address.family != family { return nil }
        var length = address.family.bitCount
        if let slash {
            let digits = utf8[utf8.index(after: slash)...]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
            length = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        }
        self.init(address: address, length: length)
    }

    public static func `default`(_ family: IPFamily) -> IPPrefix {
        IPPrefix(address: .zero(family), length: 0)!
    }

    public var family: IPFamily { address.family }
    public var isDefault: Bool { length == 0 }
    public var isHost: Bool { length == family.bitCount }
    /// The prefix with host bits cleared (`10.1.0.7/24` → `10.1.0.0/24`).
    public var network: IPPrefix { IPPrefix(address: address.masked(to: length), length: length)! }
    public var hasHostBits: Bool { address.masked(to: length) != address }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == family && other.masked(to: length) == address.masked(to: length)
    }

    public var description: String { "\(address)/\(length)" }

    /// The IPv4 dotted netmask (`255.255.255.0`), as OpenVPN and `route` want it.
    public var ipv4Netmask: String? {
        guard family == .v4 else { return nil }
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(length))
        return "\(mask >> 24 & 0xff).\(mask >> 16 & 0xff).\(mask >> 8 & 0xff).\(mask & 0xff)"
    }

    public static func < (lhs: IPPrefix, rhs: IPPrefix) -> Bool {
        if lhs.address != rhs.address { return lhs.address < rhs.address }
        return lhs.length < rhs.length
    }
}

/// An address assigned to an interface, with the length of its subnet (`10.1.0.2/24`).
public struct InterfaceAddress: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init(address: IPAddress, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public init?(_ text: String) {
        guard let prefix = IPPrefix(text) else { return nil }
        self.init(address: prefix.address, prefixLength: prefix.length)
    }

    public var family: IPFamily { address.family }
    /// The attached subnet, host bits cleared.
    public var subnet: IPPrefix { IPPrefix(address: address, length: prefixLength)!.network }
    public var description: String { "\(address)/\(prefixLength)" }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension StringProtocol {
    /// The text without leading and trailing characters from `set` (Foundation-free, for the
    /// modules that avoid Foundation).
    public func trimming(_ set: String) -> String {
        // Byte-wise when every character to trim is ASCII (what callers pass): an ASCII byte is
        // never part of a multi-byte character, and grapheme iteration is far slower (state
        // files and save files trim every line).
        if set.utf8.allSatisfy({ $0 < 0x80 }) {
            let trim = Array(set.utf8), bytes = Substring(self).utf8
            guard let first = bytes.firstIndex(where: { !trim.contains($0) }), let last = bytes.lastIndex(where: { !trim.contains($0) }) else { return "" }
            return String(decoding: bytes[first...last], as: UTF8.self)
        }
        let characters = Set(set)
        guard let first = firstIndex(where: { !characters.contains($0) }), let last = lastIndex(where: { !characters.contains($0) }) else { return "" }
        return String(self[first...last])
    }
}
