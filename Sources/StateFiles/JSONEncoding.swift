/// Encodable values as `JSON` (object keys sorted), without Foundation's JSONEncoder.
extension JSON {
    public static func encode<T: Encodable>(_ value: T) throws -> JSON {
        let encoder = ValueEncoder()
        try value.encode(to: encoder)
        return encoder.storage.value.sortedKeys()
    }

    func sortedKeys() -> JSON {
        switch self {
        case .object(let members): return .object(members.sorted { $0.0 < $1.0 }.map { ($0.0, $0.1.sortedKeys()) })
        case .array(let items): return .array(items.map { $0.sortedKeys() })
        default: return self
        }
    }
}

/// A growing JSON value shared by the containers that fill it.
final class JSONBox {
    var value: JSON = .null
    init() {}
}

struct ValueEncoder: Encoder {
    let storage: JSONBox
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(storage: JSONBox = JSONBox(), codingPath: [any CodingKey] = []) { self.storage = storage; self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = storage.value {} else { storage.value = .object([]) }
        return KeyedEncodingContainer(KeyedContainer<Key>(storage: storage, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = storage.value {} else { storage.value = .array([]) }
        return UnkeyedContainer(storage: storage, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(storage: storage, codingPath: codingPath) }

    /// Encodes a nested value into its own box and returns the result.
    static func value<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> JSON {
        let box = JSONBox()
        try value.encode(to: ValueEncoder(storage: box, codingPath: path))
        return box.value
    }

    struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let storage: JSONBox
        var codingPath: [any CodingKey]

        func set(_ key: Key, _ value: JSON) {
            guard case .object(var members) = storage.value else { return }
            members.removeAll { $0.0 == key.stringValue }
            members.append((key.stringValue, value))
            storage.value = .object(members)
        }
        mutating func encodeNil(forKey key: Key) throws { set(key, .null) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { set(key, .bool(value)) }
        mutating func encode(_ value: String, forKey key: Key) throws { set(key, .string(value)) }
        mutating func encode(_ value: Int, forKey key: Key) throws { set(key, .number(value)) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { set(key, try ValueEncoder.value(value, path: codingPath + [key])) }
        mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { if let value { set(key, .string(value)) } }
        mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { if let value { set(key, .number(value)) } }
        mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            fatalError("nested containers are not used by docknfv's output types")
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            fatalError("nested containers are not used by docknfv's output types")
        }
        mutating func superEncoder() -> any Encoder { fatalError("not used") }
        mutating func superEncoder(forKey key: Key) -> any Encoder { fatalError("not used") }
    }

    struct UnkeyedContainer: UnkeyedEncodingContainer {
        let storage: JSONBox
        var codingPath: [any CodingKey]
        var count: Int { if case .array(let items) = storage.value { return items.count }; return 0 }

        func append(_ value: JSON) {
            guard case .array(var items) = storage.value else { return }
            items.append(value)
            storage.value = .array(items)
        }
        mutating func encodeNil() throws { append(.null) }
        mutating func encode(_ value: Bool) throws { append(.bool(value)) }
        mutating func encode(_ value: String) throws { append(.string(value)) }
        mutating func encode(_ value: Int) throws { append(.number(value)) }
        mutating func encode<T: Encodable>(_ value: T) throws { append(try ValueEncoder.value(value, path: codingPath)) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            fatalError("nested containers are not used by docknfv's output types")
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { fatalError("not used") }
        mutating func superEncoder() -> any Encoder { fatalError("not used") }
    }

    struct SingleContainer: SingleValueEncodingContainer {
        let storage: JSONBox
        var codingPath: [any CodingKey]
        mutating func encodeNil() throws { storage.value = .null }
        mutating func encode(_ value: Bool) throws { storage.value = .bool(value) }
        mutating func encode(_ value: String) throws { storage.value = .string(value) }
        mutating func encode(_ value: Int) throws { storage.value = .number(value) }
        mutating func encode(_ value: Double) throws { storage.value = .number(Int(value)) }
        mutating func encode<T: Encodable>(_ value: T) throws { storage.value = try ValueEncoder.value(value, path: codingPath) }
    }
}
