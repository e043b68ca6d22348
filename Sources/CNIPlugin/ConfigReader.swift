import CNI
import StateFiles

/// Typed access to one JSON object of a config, every error naming the field by its path
/// (`firewall.rules[2].chain`) with the spec's code 7, invalid network configuration.
struct ConfigReader {
    /// A field's place in the config, spelt out only for an error message (a config may hold
    /// thousands of objects: formatting every path up front cost more than reading them).
    final class Path: Sendable {
        enum Step: Sendable { case key(String), index(Int) }
        let parent: Path?
        let step: Step?

        init(_ parent: Path?, _ step: Step?) { self.parent = parent; self.step = step }

        var text: String {
            let head = parent?.text ?? ""
            switch step {
            case .key(let key): return head.isEmpty ? key : "\(head).\(key)"
            case .index(let index): return "\(head)[\(index)]"
            case nil: return head
            }
        }
    }

    let members: [(String, JSON)]
    private let location: Path
    var path: String { location.text }

    init(_ json: JSON, path: String) throws(CNIError) {
        try self.init(json, at: Path(nil, path.isEmpty ? nil : .key(path)))
    }

    private init(_ json: JSON, at location: Path) throws(CNIError) {
        self.location = location
        guard let members = json.members else {
            let path = location.text
            throw CNIError.config(path.isEmpty ? "configuration" : path, "must be an object")
        }
        self.members = members
    }

    func field(_ key: String) -> String { Path(location, .key(key)).text }

    subscript(key: String) -> JSON? {
        guard let value = members.first(where: { $0.0 == key })?.1 else { return nil }
        if case .null = value { return nil }
        return value
    }

    func has(_ key: String) -> Bool { self[key] != nil }

    /// Keys other than the object's are refused: a misspelt key would otherwise be silently ignored.
    /// (Keys beginning with `cni.dev/` are the runtime's.)
    func refuseUnknown(_ object: ConfigObject) throws(CNIError) {
        let known = object.keys
        for (key, _) in members where !known.contains(key) && !key.hasPrefix("cni.dev/") {
            throw CNIError(CNIError.invalidConfig, "invalid network configuration",
                           details: "\(field(key)): unknown key (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    func string(_ key: String) throws(CNIError) -> String? {
        guard let value = self[key] else { return nil }
        guard let text = value.string else { throw CNIError.config(field(key), "must be a string") }
        return text
    }

    func bool(_ key: String) throws(CNIError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard let flag = value.bool else { throw CNIError.config(field(key), "must be true or false") }
        return flag
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws(CNIError) -> Int? {
        guard let value = self[key] else { return nil }
        return try Self.int(value, field: field(key), in: range)
    }

    static func int(_ value: JSON, field: @autoclosure () -> String, in range: ClosedRange<Int>) throws(CNIError) -> Int {
        guard let number = value.int else { throw CNIError.config(field(), "must be an integer") }
        guard range.contains(number) else { throw CNIError.config(field(), "\(number) is outside \(range.lowerBound)–\(range.upperBound)") }
        return number
    }

    func object(_ key: String) throws(CNIError) -> ConfigReader? {
        guard let value = self[key] else { return nil }
        return try ConfigReader(value, at: Path(location, .key(key)))
    }

    func array(_ key: String) throws(CNIError) -> [JSON]? {
        guard let value = self[key] else { return nil }
        guard let items = value.array else { throw CNIError.config(field(key), "must be an array") }
        return items
    }

    /// Each element of an array of objects, with its path.
    func objects(_ key: String) throws(CNIError) -> [ConfigReader] {
        guard let items = try array(key) else { return [] }
        let list = Path(location, .key(key))
        var out: [ConfigReader] = []
        out.reserveCapacity(items.count)
        for (index, item) in items.enumerated() { out.append(try ConfigReader(item, at: Path(list, .index(index)))) }
        return out
    }

    func strings(_ key: String) throws(CNIError) -> [String]? {
        guard let items = try array(key) else { return nil }
        var out: [String] = []
        for (index, item) in items.enumerated() {
            guard let text = item.string else { throw CNIError.config("\(field(key))[\(index)]", "must be a string") }
            out.append(text)
        }
        return out
    }
}
