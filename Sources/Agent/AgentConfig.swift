import Policy
import RuleEngine
import RuleState
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

/// `docknfv-agent --config FILE`.
public struct AgentConfig: Sendable {
    public enum FailMode: String, Sendable { case open, closed }

    public var policyServerURL: String
    public var caCertFile: String
    public var clientCertFile: String
    public var clientKeyFile: String
    public var pollIntervalSeconds: Double = 5
    public var stateDir = "/var/lib/docknfv"
    public var overlayNetwork: IPPrefix
    public var failMode: FailMode = .open
    public var denyAction: DenyAction = .reject
    public var metricsAddress: (host: String, port: Int)?
    public var backend: BackendChoice = .auto

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public var key: String
        public var reason: String
        public var description: String { "config \(key): \(reason)" }
    }

    /// Every key of the config file; the decoder refuses any other, so this is exactly what is
    /// accepted (docs/config-reference.md is checked against it).
    public static let keys: Set<String> = [
        "policyServerURL", "caCertFile", "clientCertFile", "clientKeyFile", "pollIntervalSeconds", "stateDir",
        "overlayNetwork", "failMode", "denyAction", "metricsAddress", "backend",
    ]

    public init(json: JSON) throws(Invalid) {
        guard let members = json.members else { throw Invalid(key: "(file)", reason: "must be a JSON object") }
        for (key, _) in members where !Self.keys.contains(key) {
            throw Invalid(key: key, reason: "unknown key (known: \(Self.keys.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String, required: Bool = false) throws(Invalid) -> String? {
            guard let value = json[key] else {
                if required { throw Invalid(key: key, reason: "missing") }
                return nil
            }
            guard let text = value.string, !text.isEmpty else { throw Invalid(key: key, reason: "must be a non-empty string") }
            return text
        }
        policyServerURL = try string("policyServerURL", required: true)!
        guard policyServerURL.hasPrefix("https://") else { throw Invalid(key: "policyServerURL", reason: "must be an https:// URL") }
        caCertFile = try string("caCertFile", required: true)!
        clientCertFile = try string("clientCertFile", required: true)!
        clientKeyFile = try string("clientKeyFile", required: true)!
        if let value = json["pollIntervalSeconds"] {
            let number = value.int.map(Double.init) ?? { if case .decimal(let text) = value { return Double(text) } else { return nil } }()
            guard let number, number >= 0.2, number <= 3600 else { throw Invalid(key: "pollIntervalSeconds", reason: "must be a number from 0.2 to 3600") }
            pollIntervalSeconds = number
        }
        if let dir = try string("stateDir") {
            guard dir.hasPrefix("/") else { throw Invalid(key: "stateDir", reason: "must be an absolute path") }
            stateDir = dir
        }
        let overlay = try string("overlayNetwork", required: true)!
        guard let prefix = IPPrefix(overlay), overlay.contains("/") else { throw Invalid(key: "overlayNetwork", reason: "\"\(overlay)\" is not a network in CIDR notation") }
        overlayNetwork = prefix.network
        if let text = try string("failMode") {
            guard let mode = FailMode(rawValue: text) else { throw Invalid(key: "failMode", reason: "\"\(text)\": expected open or closed") }
            failMode = mode
        }
        if let text = try string("denyAction") {
            guard let action = DenyAction(rawValue: text) else { throw Invalid(key: "denyAction", reason: "\"\(text)\": expected reject, drop or log") }
            denyAction = action
        }
        if let text = try string("metricsAddress") {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
                throw Invalid(key: "metricsAddress", reason: "\"\(text)\": expected HOST:PORT")
            }
            metricsAddress = (String(text[..<colon]).trimmingCharacters(in: "[]"), port)
        }
        if let text = try string("backend") {
            guard let choice = BackendChoice(rawValue: text) else { throw Invalid(key: "backend", reason: "\"\(text)\": expected auto, nftables or iptables") }
            backend = choice
        }
    }

    /// Refuses to start without readable TLS material, naming the file.
    public func checkTLSFiles() throws(Invalid) {
        for (key, path) in [("caCertFile", caCertFile), ("clientCertFile", clientCertFile), ("clientKeyFile", clientKeyFile)] where access(path, R_OK) != 0 {
            throw Invalid(key: key, reason: "\(path) cannot be read: \(String(cString: strerror(errno)))")
        }
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
