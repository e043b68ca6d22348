import StateFiles

/// The spec's error result: a well-known code (0–99) or a plugin's own (100+), a short message and
/// details. Printed on stdout with a non-zero exit.
public struct CNIError: Error, Equatable, CustomStringConvertible, Sendable {
    public var code: Int
    public var msg: String
    public var details: String

    public init(_ code: Int, _ msg: String, details: String = "") {
        self.code = code
        self.msg = msg
        self.details = details
    }

    public var description: String { details.isEmpty ? msg : "\(msg): \(details)" }

    // Well-known codes (CNI spec 1.1.0, section 5 "Error").
    public static let incompatibleVersion = 1
    public static let unsupportedField = 2
    public static let unknownContainer = 3
    public static let invalidEnvironment = 4
    public static let ioFailure = 5
    public static let decodeFailure = 6
    public static let invalidConfig = 7
    public static let tryAgainLater = 11
    public static let notAvailable = 50
    public static let notAvailableExistingDamaged = 51
    /// docknfv's own: the kernel refused a change, or something else failed while applying.
    public static let applyFailed = 100
    /// docknfv's own: CHECK found the attachment's networking not as ADD left it.
    public static let checkFailed = 101

    public static func config(_ field: String, _ reason: String) -> CNIError {
        CNIError(invalidConfig, "invalid network configuration", details: "\(field): \(reason)")
    }

    public static func environment(_ variable: String, _ reason: String) -> CNIError {
        CNIError(invalidEnvironment, "invalid environment variable \(variable)", details: reason)
    }

    public func json(cniVersion: String) -> JSON {
        var members: [(String, JSON)] = [("cniVersion", .string(cniVersion)), ("code", .number(code)), ("msg", .string(msg))]
        if !details.isEmpty { members.append(("details", .string(details))) }
        return .object(members)
    }
}
