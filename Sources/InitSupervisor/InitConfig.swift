import DualHome
import NetTypes
import Foundation
import StateFiles

/// docknfv-init's configuration: `/etc/docknfv/init.json` (or `--config`), then `DOCKNFV_*`
/// environment variables on top.
public struct InitConfig: Sendable, Equatable {
    public var dualHome: DualHomeConfig
    /// How long to wait for the interfaces to exist, be up and hold an address.
    public var waitTimeoutSeconds: Double
    /// Where docknfv keeps its desired state (rules re-applied at start).
    public var stateDir: String

    public static let defaultPath = "/etc/docknfv/init.json"
    public static let defaultWaitTimeout: Double = 30
    public static let defaultStateDir = "/var/lib/docknfv"

    public init(dualHome: DualHomeConfig = DualHomeConfig(), waitTimeoutSeconds: Double = defaultWaitTimeout,
                stateDir: String = defaultStateDir) {
        self.dualHome = dualHome
        self.waitTimeoutSeconds = waitTimeoutSeconds
        self.stateDir = stateDir
    }

    /// Each setting: a field of the file (its path, `left.interface`) and the environment variable
    /// that overrides it. `merge(environment:)` reads exactly these variables.
    public enum Setting: String, CaseIterable, Sendable {
        case mode
        case leftInterface = "left.interface", leftGateway = "left.gateway", leftTable = "left.table"
        case rightInterface = "right.interface", rightGateway = "right.gateway", rightTable = "right.table"
        case rulePriority, waitTimeoutSeconds, stateDir

        public var field: String { rawValue }

        public var variable: String {
            switch self {
            case .mode: "DOCKNFV_MODE"
            case .leftInterface: "DOCKNFV_LEFT_IF"
            case .leftGateway: "DOCKNFV_LEFT_GW"
            case .leftTable: "DOCKNFV_LEFT_TABLE"
            case .rightInterface: "DOCKNFV_RIGHT_IF"
            case .rightGateway: "DOCKNFV_RIGHT_GW"
            case .rightTable: "DOCKNFV_RIGHT_TABLE"
            case .rulePriority: "DOCKNFV_RULE_PRIORITY"
            case .waitTimeoutSeconds: "DOCKNFV_WAIT_TIMEOUT"
            case .stateDir: "DOCKNFV_STATE_DIR"
            }
        }
    }

    /// The environment variable that overrides each configuration field.
    public static let environmentNames: [String: String] =
        Dictionary(uniqueKeysWithValues: Setting.allCases.map { ($0.field, $0.variable) })

    /// The keys of the file, object by object (`""` is the top level): the decoder's own coding
    /// keys, which are all it accepts.
    public static let fileKeys: [(path: String, keys: [String])] = [
        ("", FileConfig.CodingKeys.allCases.map(\.rawValue)),
        ("left", FileSide.CodingKeys.allCases.map(\.rawValue)),
        ("right", FileSide.CodingKeys.allCases.map(\.rawValue)),
    ]

    /// Loads the file (when `path` is given it must exist; the default path is optional), applies
    /// environment overrides and validates the result.
    public static func load(path: String?, environment: [String: String]) throws(InitConfigError) -> InitConfig {
        var config = InitConfig()
        let filePath = path ?? defaultPath
        if let data = try readFile(filePath, required: path != nil) {
            try config.merge(json: data, path: filePath)
        }
        try config.merge(environment: environment)
        do { try config.dualHome.validate() } catch { throw InitConfigError(error) }
        try config.checkStateDir(field: environment["DOCKNFV_STATE_DIR"] != nil ? "DOCKNFV_STATE_DIR" : "stateDir")
        return config
    }

    /// docknfv-init only reads the state directory: it may be missing (nothing persisted) or
    /// read-only, but it must be an absolute path to a directory that only root can change.
    func checkStateDir(field: String) throws(InitConfigError) {
        do { try StateDirectory.checkReadable(stateDir) } catch {
            throw .invalid(field: field, value: stateDir, reason: error.description)
        }
    }

    static func readFile(_ path: String, required: Bool) throws(InitConfigError) -> Data? {
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw .unreadable(path: path, reason: "no such file") }
            return nil
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path: path, reason: "cannot be read")
        }
        return data
    }

    // MARK: JSON

    mutating func merge(json data: Data, path: String) throws(InitConfigError) {
        try JSONKeyCheck.check(data, path: path)
        let file: FileConfig
        do {
            file = try JSONDecoder().decode(FileConfig.self, from: data)
        } catch let error as InitConfigError {
            throw error.inFile(path)
        } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
            throw .malformedJSON(path: path, detail: Self.underlyingText(context))
        } catch let error as DecodingError {
            throw Self.describe(error, path: path)
        } catch {
            throw .malformedJSON(path: path, detail: String(describing: error))
        }
        if let mode = file.mode { try setMode(mode, field: "mode") }
        for (name, side) in [("left", file.left), ("right", file.right)] {
            guard let side else { continue }
            if let interface = side.interface { try setInterface(interface, side: name, field: "\(name).interface") }
            if let gateways = side.gateway { try setGateways(gateways, side: name, field: "\(name).gateway") }
            if let table = side.table { setTable(table, side: name) }
        }
        if let priority = file.rulePriority { dualHome.rulePriority = priority }
        if let timeout = file.waitTimeoutSeconds { try setTimeout(timeout, field: "waitTimeoutSeconds") }
        if let stateDir = file.stateDir { self.stateDir = stateDir }
    }

    static func describe(_ error: DecodingError, path: String) -> InitConfigError {
        func field(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context) where context.codingPath.isEmpty:
            return .unreadable(path: path, reason: "expected \(typeName(type)) at the top level")
        case .typeMismatch(let type, let context):
            return .invalid(field: field(context.codingPath), value: "(\(path))", reason: "expected \(typeName(type))")
        case .valueNotFound(let type, let context):
            return .invalid(field: field(context.codingPath), value: "null (\(path))", reason: "expected \(typeName(type))")
        case .keyNotFound(let key, let context):
            return .invalid(field: field(context.codingPath + [key]), value: "(\(path))", reason: "required")
        case .dataCorrupted(let context):
            return .invalid(field: field(context.codingPath), value: "(\(path))", reason: context.debugDescription)
        @unknown default:
            return .malformedJSON(path: path, detail: String(describing: error))
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is UInt32.Type: return "a whole number from 0 to 4294967295"
        case is Double.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        default:
            // JSONDecoder names containers by Swift type (`Dictionary<String, Any>`); say it in JSON terms.
            let name = "\(type)"
            return name.hasPrefix("Dictionary") ? "a JSON object" : name.hasPrefix("Array") ? "a JSON list" : name
        }
    }

    static func underlyingText(_ context: DecodingError.Context) -> String {
        if let underlying = context.underlyingError { return "\(context.debugDescription) \(underlying.localizedDescription)" }
        return context.debugDescription
    }

    // MARK: Environment

    mutating func merge(environment env: [String: String]) throws(InitConfigError) {
        for setting in Setting.allCases {
            let variable = setting.variable
            guard let text = env[variable] else { continue }
            switch setting {
            case .mode: try setMode(text, field: variable)
            case .leftInterface, .rightInterface: try setInterface(text, side: setting.side, field: variable)
            case .leftGateway, .rightGateway:
                let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                try setGateways(text.trimmingCharacters(in: .whitespaces).isEmpty ? [] : parts, side: setting.side, field: variable)
            case .leftTable, .rightTable: setTable(try Self.parseUInt32(text, field: variable), side: setting.side)
            case .rulePriority: dualHome.rulePriority = try Self.parseUInt32(text, field: variable)
            case .waitTimeoutSeconds:
                guard let value = Double(text.trimmingCharacters(in: .whitespaces)) else {
                    throw .invalid(field: variable, value: text, reason: "not a number of seconds")
                }
                try setTimeout(value, field: variable)
            case .stateDir: stateDir = text
            }
        }
    }

    static func parseUInt32(_ text: String, field: String) throws(InitConfigError) -> UInt32 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt32(trimmed) else {
            throw .invalid(field: field, value: text, reason: "expected a whole number from 0 to 4294967295")
        }
        return value
    }

    // MARK: Setters shared by both sources

    mutating func setMode(_ text: String, field: String) throws(InitConfigError) {
        guard let mode = DualHomeMode(rawValue: text.lowercased()) else {
            throw .invalid(field: field, value: text, reason: "unknown mode (expected \(DualHomeMode.allCases.map(\.rawValue).joined(separator: " or ")))")
        }
        dualHome.mode = mode
    }

    mutating func setInterface(_ name: String, side: String, field: String) throws(InitConfigError) {
        do { try DualHomeConfig.validateInterfaceName(name, field: field) } catch { throw InitConfigError(error) }
        if side == "left" { dualHome.left.interface = name } else { dualHome.right.interface = name }
    }

    mutating func setGateways(_ texts: [String], side: String, field: String) throws(InitConfigError) {
        var gateways: [IPAddress] = []
        for text in texts {
            guard let address = IPAddress(text) else {
                throw .invalid(field: field, value: text, reason: "not an IPv4 or IPv6 address")
            }
            if gateways.contains(where: { $0.family == address.family }) {
                throw .invalid(field: field, value: texts.joined(separator: ","), reason: "at most one \(address.family) gateway")
            }
            gateways.append(address)
        }
        if side == "left" { dualHome.left.gateways = gateways } else { dualHome.right.gateways = gateways }
    }

    mutating func setTable(_ table: UInt32, side: String) {
        if side == "left" { dualHome.left.table = table } else { dualHome.right.table = table }
    }

    mutating func setTimeout(_ value: Double, field: String) throws(InitConfigError) {
        guard value.isFinite, value >= 0, value <= 86_400 else {
            throw .invalid(field: field, value: String(value), reason: "expected seconds between 0 and 86400")
        }
        waitTimeoutSeconds = value
    }
}

extension InitConfig.Setting {
    /// "left" or "right" for a side's setting.
    var side: String { String(rawValue.prefix { $0 != "." }) }
}

/// The JSON file's shape. Unknown keys are rejected so a typo never silently falls back to a default.
struct FileConfig: Decodable {
    var mode: String?
    var left: FileSide?
    var right: FileSide?
    var rulePriority: UInt32?
    var waitTimeoutSeconds: Double?
    var stateDir: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case mode, left, right, rulePriority, waitTimeoutSeconds, stateDir
    }

    init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), prefix: "")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        mode = try container.decodeIfPresent(String.self, forKey: .mode)
        left = try container.decodeIfPresent(FileSide.self, forKey: .left)
        right = try container.decodeIfPresent(FileSide.self, forKey: .right)
        rulePriority = try decodeUInt32(container, .rulePriority)
        waitTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .waitTimeoutSeconds)
        stateDir = try container.decodeIfPresent(String.self, forKey: .stateDir)
    }
}

struct FileSide: Decodable {
    var interface: String?
    /// One address, or a list with at most one per family.
    var gateway: [String]?
    var table: UInt32?

    enum CodingKeys: String, CodingKey, CaseIterable { case interface, gateway, table }

    init(from decoder: any Decoder) throws {
        let prefix = decoder.codingPath.map(\.stringValue).joined(separator: ".") + "."
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), prefix: prefix)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        interface = try container.decodeIfPresent(String.self, forKey: .interface)
        table = try decodeUInt32(container, .table)
        if let single = try? container.decodeIfPresent(String.self, forKey: .gateway) {
            gateway = [single]
        } else {
            gateway = try container.decodeIfPresent([String].self, forKey: .gateway)
        }
    }
}

/// Decodes a whole number in UInt32 range. JSONDecoder's own UInt32 errors for -5 or 1.5 carry no
/// coding path, so the number is read as a Double and checked here, naming the field.
private func decodeUInt32<K: CodingKey>(_ container: KeyedDecodingContainer<K>, _ key: K) throws -> UInt32? {
    guard let number = try container.decodeIfPresent(Double.self, forKey: key) else { return nil }
    guard number >= 0, number <= Double(UInt32.max), number.rounded() == number else {
        let field = (container.codingPath + [key]).map(\.stringValue).joined(separator: ".")
        throw InitConfigError.invalid(field: field, value: String(number), reason: "expected a whole number from 0 to 4294967295")
    }
    return UInt32(number)
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownKeys(_ decoder: any Decoder, allowed: [String], prefix: String) throws {
    let container = try decoder.container(keyedBy: AnyKey.self)
    for key in container.allKeys where !allowed.contains(key.stringValue) {
        throw InitConfigError.invalid(field: prefix + key.stringValue, value: "", reason: "unknown field (known: \(allowed.joined(separator: ", ")))")
    }
}

/// Configuration errors. Each names the field (file path or environment variable) and value.
public enum InitConfigError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformedJSON(path: String, detail: String)
    case invalid(field: String, value: String, reason: String)

    /// Re-labels a dual-home field error so that its message also names the environment variable.
    public init(_ error: DualHomeError) {
        if case .invalidField(let field, let value, let reason) = error {
            self = .invalid(field: field, value: value, reason: reason)
        } else {
            self = .invalid(field: "-", value: "", reason: error.description)
        }
    }

    func inFile(_ path: String) -> InitConfigError {
        if case .invalid(let field, let value, let reason) = self, value.isEmpty {
            return .invalid(field: field, value: "(\(path))", reason: reason)
        }
        return self
    }

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "config \(path): \(reason)"
        case .malformedJSON(let path, let detail):
            return "config \(path): not valid JSON: \(detail)"
        case .invalid(let field, let value, let reason):
            let env = InitConfig.environmentNames[field].map { " (\($0))" } ?? ""
            return "\(field)\(env) = \(value.hasPrefix("(") ? value : "\"\(value)\""): \(reason)"
        }
    }
}
