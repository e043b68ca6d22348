/// The CNI operations.
public enum CNICommand: String, Sendable, CaseIterable {
    case add = "ADD", del = "DEL", check = "CHECK", gc = "GC", status = "STATUS", version = "VERSION"

    /// The first spec version that has the command.
    var minimumVersion: CNIVersion? {
        switch self {
        case .check: return .v0_4_0
        case .gc, .status: return .v1_1_0
        default: return nil
        }
    }

    /// Whether the command is about one attachment (container ID, netns, interface).
    public var isAttachment: Bool { self == .add || self == .del || self == .check }
}

/// One attachment: what the runtime identifies it by.
public struct AttachmentID: Hashable, Sendable, CustomStringConvertible {
    public var containerID: String
    public var ifname: String
    public init(containerID: String, ifname: String) { self.containerID = containerID; self.ifname = ifname }
    public var description: String { "\(containerID)/\(ifname)" }
}

/// The protocol parameters from the environment, validated for the command.
public struct CNIRequest: Sendable {
    public var command: CNICommand
    /// Set for ADD, DEL and CHECK.
    public var attachment: AttachmentID?
    /// The container's netns path (required for ADD and CHECK; DEL may come without one).
    public var netns: String?
    /// CNI_ARGS as key/value pairs, in order.
    public var args: [(String, String)]
    public var path: [String]

    public init(environment: [String: String]) throws(CNIError) {
        guard let commandText = environment["CNI_COMMAND"], !commandText.isEmpty else {
            throw CNIError.environment("CNI_COMMAND", "missing (expected one of \(CNICommand.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let command = CNICommand(rawValue: commandText) else {
            throw CNIError.environment("CNI_COMMAND", "unknown command \"\(commandText)\" (expected one of \(CNICommand.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.command = command
        path = (environment["CNI_PATH"] ?? "").split(separator: ":").map(String.init)
        args = []
        netns = nil
        attachment = nil
        guard command.isAttachment else { return }

        guard let containerID = environment["CNI_CONTAINERID"], !containerID.isEmpty else { throw CNIError.environment("CNI_CONTAINERID", "missing") }
        guard Self.isValidContainerID(containerID) else {
            throw CNIError.environment("CNI_CONTAINERID", "\"\(containerID.prefix(80))\" must start with a letter or digit and hold only letters, digits, _ . and -")
        }
        guard let ifname = environment["CNI_IFNAME"], !ifname.isEmpty else { throw CNIError.environment("CNI_IFNAME", "missing") }
        guard Self.isValidInterfaceName(ifname) else {
            throw CNIError.environment("CNI_IFNAME", "\"\(ifname.prefix(40))\" is not a valid interface name (1 to 15 bytes, no /, :, whitespace; not . or ..)")
        }
        attachment = AttachmentID(containerID: containerID, ifname: ifname)
        let netns = environment["CNI_NETNS"].flatMap { $0.isEmpty ? nil : $0 }
        if command != .del && netns == nil { throw CNIError.environment("CNI_NETNS", "missing (\(command.rawValue) needs the container's network namespace)") }
        if let netns, !netns.hasPrefix("/") { throw CNIError.environment("CNI_NETNS", "\"\(netns)\" is not an absolute path") }
        self.netns = netns
        args = try Self.parseArgs(environment["CNI_ARGS"] ?? "")
    }

    /// `K1=V1;K2=V2` (values may be empty; a key without `=` is an error).
    public static func parseArgs(_ text: String) throws(CNIError) -> [(String, String)] {
        var out: [(String, String)] = []
        for pair in text.split(separator: ";", omittingEmptySubsequences: true) {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw CNIError.environment("CNI_ARGS", "\"\(pair.prefix(80))\" is not KEY=VALUE")
            }
            out.append((String(pair[..<equals]), String(pair[pair.index(after: equals)...])))
        }
        return out
    }

    public func arg(_ key: String) -> String? { args.last { $0.0 == key }?.1 }

    static func isValidContainerID(_ id: String) -> Bool {
        guard let first = id.unicodeScalars.first, first.isASCIIAlphanumeric else { return false }
        return id.unicodeScalars.allSatisfy { $0.isASCIIAlphanumeric || $0 == "_" || $0 == "." || $0 == "-" }
    }

    public static func isValidInterfaceName(_ name: String) -> Bool {
        name.utf8.count <= 15 && !name.isEmpty && name != "." && name != ".."
            && !name.unicodeScalars.contains { $0 == "/" || $0 == ":" || $0.value <= 0x20 || $0.value == 0x7f }
    }
}

extension Unicode.Scalar {
    var isASCIIAlphanumeric: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) || ("0"..."9").contains(self) }
}
