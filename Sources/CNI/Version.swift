/// A CNI spec version ("1.1.0").
public struct CNIVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var major: Int, minor: Int, patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) { (self.major, self.minor, self.patch) = (major, minor, patch) }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let a = Int(parts[0]), let b = Int(parts[1]), let c = Int(parts[2]), a >= 0, b >= 0, c >= 0 else { return nil }
        self.init(a, b, c)
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (a: CNIVersion, b: CNIVersion) -> Bool { (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch) }

    public static let v0_3_0 = CNIVersion(0, 3, 0), v0_3_1 = CNIVersion(0, 3, 1), v0_4_0 = CNIVersion(0, 4, 0)
    public static let v1_0_0 = CNIVersion(1, 0, 0), v1_1_0 = CNIVersion(1, 1, 0)

    /// What docknfv speaks. 0.1.0 and 0.2.0 predate chaining (no prevResult), which docknfv needs.
    public static let supported: [CNIVersion] = [.v0_3_0, .v0_3_1, .v0_4_0, .v1_0_0, .v1_1_0]
    public static let latest = CNIVersion.v1_1_0

    /// A config's cniVersion, checked against what docknfv speaks and what the command needs.
    public static func negotiate(_ text: String?, for command: CNICommand) throws(CNIError) -> CNIVersion {
        guard let text else { throw CNIError.config("cniVersion", "missing") }
        guard let version = CNIVersion(text), supported.contains(version) else {
            throw CNIError(CNIError.incompatibleVersion, "incompatible CNI version",
                           details: "cniVersion \(text) is not supported; docknfv supports \(supported.map(\.description).joined(separator: ", "))")
        }
        if let minimum = command.minimumVersion, version < minimum {
            throw CNIError(CNIError.incompatibleVersion, "incompatible CNI version",
                           details: "\(command.rawValue) needs cniVersion \(minimum) or later; the config says \(version)")
        }
        return version
    }
}
