/// The set types docknfv manages (named as ipset names them).
public enum SetType: String, Sendable, CaseIterable, Codable {
    case hashNet = "hash:net"
    case hashIP = "hash:ip"
    case hashIPPort = "hash:ip,port"
    /// An address and the packet mark (`--match-set NAME dst,dst`: the second direction is
    /// ignored, the mark is the packet's).
    case hashIPMark = "hash:ip,mark"

    /// How many packet fields a lookup takes (`-m set --match-set NAME src,dst` uses that many).
    public var dimension: Int { self == .hashIPPort || self == .hashIPMark ? 2 : 1 }
}

/// One element: `10.0.0.0/8` (hash:net), `10.0.0.1` (hash:ip), `10.0.0.1,tcp:80` (hash:ip,port),
/// `10.0.0.1,0x00000005` (hash:ip,mark).
public struct SetEntry: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: Int?
    public var proto: UInt8?
    public var port: UInt16?
    public var mark: UInt32?

    public init(address: IPAddress, prefixLength: Int? = nil, proto: UInt8? = nil, port: UInt16? = nil, mark: UInt32? = nil) {
        self.address = address
        self.prefixLength = prefixLength
        self.proto = proto
        self.port = port
        self.mark = mark
    }

    static let protocols: [(String, UInt8)] = [("tcp", 6), ("udp", 17), ("sctp", 132), ("udplite", 136)]

    /// Parses an element for a set of `type`; nil when it does not fit.
    public init?(_ text: String, type: SetType) {
        switch type {
        case .hashNet:
            guard let prefix = IPPrefix(text), prefix.length > 0 else { return nil }
            self.init(address: prefix.network.address, prefixLength: prefix.isHost ? nil : prefix.length)
        case .hashIP:
            guard let address = IPAddress(text) else { return nil }
            self.init(address: address)
        case .hashIPPort:
            let parts = text.split(separator: ",", maxSplits: 1).map(String.init)
            guard parts.count == 2, let address = IPAddress(parts[0]) else { return nil }
            let portParts = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
            let protoName = portParts.count == 2 ? portParts[0].lowercased() : "tcp"
            guard let proto = Self.protocols.first(where: { $0.0 == protoName })?.1, let port = UInt16(portParts.last!) else { return nil }
            self.init(address: address, proto: proto, port: port)
        case .hashIPMark:
            // The mark as ipset reads it: 0x-prefixed hex or decimal.
            let parts = text.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, let address = IPAddress(parts[0]) else { return nil }
            let markText = parts[1].lowercased()
            let digits = markText.hasPrefix("0x") ? markText.dropFirst(2) : Substring(markText)
            // Digits only: UInt32(_:radix:) would also take a sign.
            guard !digits.isEmpty, digits.allSatisfy(\.isHexDigit),
                  let mark = markText.hasPrefix("0x") ? UInt32(digits, radix: 16) : digits.allSatisfy(\.isNumber) ? UInt32(digits, radix: 10) : nil else { return nil }
            self.init(address: address, mark: mark)
        }
    }

    public var family: IPFamily { address.family }

    /// The prefix length, a host's full length when none was given.
    public var effectivePrefixLength: Int { prefixLength ?? address.family.bitCount }

    public var description: String {
        var text = address.description
        if let prefixLength, prefixLength != address.family.bitCount { text += "/\(prefixLength)" }
        if let proto, let port {
            text += ",\(Self.protocols.first { $0.1 == proto }?.0 ?? String(proto)):\(port)"
        }
        if let mark {
            // As `ipset list` prints it.
            let hex = String(mark, radix: 16)
            text += ",0x" + String(repeating: "0", count: 8 - hex.count) + hex
        }
        return text
    }
}
