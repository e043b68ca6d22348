import CIPSetShim
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

extension SetType {
    /// The revision docknfv creates sets at: one every kernel since 4.x and the ipset 7 tools
    /// understand (newer revisions may be unknown to the tools, so `ipset list` could not show them).
    var revision: UInt8 {
        switch self {
        case .hashNet: return 6
        case .hashIP: return 4
        case .hashIPPort: return 5
        case .hashIPMark: return 2
        }
    }
}

extension SetEntry {
    var raw: dnfv_ipset_elem {
        var elem = dnfv_ipset_elem()
        withUnsafeMutableBytes(of: &elem.addr) { buffer in for (i, b) in address.bytes.enumerated() { buffer[i] = b } }
        elem.cidr = UInt8(prefixLength ?? 0)
        elem.proto = proto ?? 0
        elem.port = port ?? 0
        elem.mark = mark ?? 0
        elem.has_mark = mark == nil ? 0 : 1
        return elem
    }
}

public struct IPSetError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var set: String
    public var code: Int32
    public var description: String {
        "ipset \(operation) \(set): \(String(cString: dnfv_ipset_strerror(code))) (\(code < 4096 ? "errno" : "ipset error") \(code))"
    }
    /// The kernel said the element or set already exists (or is absent, on delete).
    public var isExist: Bool { code == 4103 || code == EEXIST }
    public var isMissingSet: Bool { code == ENOENT }
}

/// ipset operations in the current thread's network namespace, over nfnetlink (libmnl).
public enum IPSet {
    static func check(_ rc: Int32, _ operation: String, _ set: String) throws {
        if rc != 0 { throw IPSetError(operation: operation, set: set, code: errno) }
    }

    public static func create(_ name: String, type: SetType, family: IPFamily, maxElements: UInt32 = 0) throws {
        try validate(name)
        var min: UInt8 = 0, max: UInt8 = 0
        try check(dnfv_ipset_type_revisions(type.rawValue, UInt8(family.addressFamily), &min, &max), "type", type.rawValue)
        let revision = Swift.max(min, Swift.min(type.revision, max))
        try check(dnfv_ipset_create(name, type.rawValue, revision, UInt8(family.addressFamily), maxElements), "create", name)
    }

    public static func destroy(_ name: String) throws { try check(dnfv_ipset_simple(3, name, nil), "destroy", name) }
    public static func flush(_ name: String) throws { try check(dnfv_ipset_simple(4, name, nil), "flush", name) }
    public static func rename(_ name: String, to newName: String) throws { try check(dnfv_ipset_simple(5, name, newName), "rename", name) }
    public static func swap(_ name: String, _ other: String) throws { try check(dnfv_ipset_simple(6, name, other), "swap", name) }

    public static func add(_ name: String, family: IPFamily, _ entries: [SetEntry], existOK: Bool = true) throws {
        try adt(9, "add", name, family, entries, existOK)
    }

    public static func delete(_ name: String, family: IPFamily, _ entries: [SetEntry], absentOK: Bool = true) throws {
        try adt(10, "del", name, family, entries, absentOK)
    }

    static func adt(_ cmd: Int32, _ operation: String, _ name: String, _ family: IPFamily, _ entries: [SetEntry], _ tolerant: Bool) throws {
        guard !entries.isEmpty else { return }
        if let wrong = entries.first(where: { $0.family != family }) {
            throw IPSetError(operation: "\(operation) \(wrong)", set: name, code: 4106)
        }
        let raw = entries.map(\.raw)
        try check(raw.withUnsafeBufferPointer { dnfv_ipset_adt(cmd, name, UInt8(family.addressFamily), $0.baseAddress, $0.count, tolerant ? 1 : 0) }, operation, name)
    }

    public struct Listing: Sendable, Equatable {
        public var type: String
        public var family: IPFamily
        public var entries: [SetEntry]
    }

    public static func list(_ name: String) throws -> Listing {
        var type = [CChar](repeating: 0, count: 64)
        var family: UInt8 = 0
        var capacity = 1024
        while true {
            var elems = [dnfv_ipset_elem](repeating: dnfv_ipset_elem(), count: capacity)
            let count = dnfv_ipset_list(name, &type, type.count, &family, &elems, capacity)
            if count < 0 { throw IPSetError(operation: "list", set: name, code: errno) }
            if count > capacity { capacity = count; continue }
            let fam: IPFamily = Int32(family) == AF_INET6 ? .v6 : .v4
            let typeName = String(decoding: type.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let entries = elems.prefix(count).map { elem -> SetEntry in
                var e = elem
                let bytes = withUnsafeBytes(of: &e.addr) { Array($0.prefix(fam.byteCount)) }
                let address = IPAddress(family: fam, bytes: bytes)!
                return SetEntry(address: address, prefixLength: e.cidr == 0 || Int(e.cidr) == fam.bitCount ? nil : Int(e.cidr),
                                proto: e.proto == 0 ? nil : e.proto, port: e.proto == 0 ? nil : e.port, mark: e.has_mark == 0 ? nil : e.mark)
            }
            return Listing(type: typeName, family: fam, entries: entries)
        }
    }

    public static func names() throws -> [String] {
        var buffer = [CChar](repeating: 0, count: 65536)
        let count = dnfv_ipset_names(&buffer, buffer.count)
        if count < 0 { throw IPSetError(operation: "list", set: "*", code: errno) }
        return buffer.split(separator: 0).prefix(count).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    public static func exists(_ name: String) -> Bool { (try? list(name)) != nil }

    /// Prefix of docknfv's temporary sets. A set with this prefix is docknfv's by construction
    /// (no user name can be given to docknfvctl with it), so leftovers of a killed run may go.
    public static let temporaryPrefix = "dnfv~tmp~"

    /// Makes `name` hold exactly `entries`, atomically for packet matching: the new content is built
    /// in a temporary set of docknfv's own (a fresh name, created exclusively, so an existing set is
    /// never reused or destroyed) and swapped in, so rules never see a half-filled set.
    public static func replace(_ name: String, type: SetType, family: IPFamily, entries: [SetEntry]) throws {
        try validate(name)
        var temporary = ""
        for attempt in 0..<8 {
            temporary = temporaryPrefix + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            do {
                try create(temporary, type: type, family: family, maxElements: UInt32(Swift.max(65536, entries.count)))
                break
            } catch let error as IPSetError where error.isExist && attempt < 7 {
                continue // someone else's set has that name: leave it alone, pick another
            }
        }
        do {
            try add(temporary, family: family, entries)
            if exists(name) {
                try swap(name, temporary)
                try destroy(temporary)
            } else {
                try rename(temporary, to: name)
            }
        } catch {
            try? destroy(temporary)
            throw error
        }
    }

    /// Temporary sets that exist now: while no docknfv run is refilling a set, leftovers of a
    /// killed run.
    public static func temporaries() -> [String] {
        ((try? names()) ?? []).filter { $0.hasPrefix(temporaryPrefix) }
    }

    /// Destroys temporary sets a killed run left behind (those not in use by any rule); returns
    /// the names destroyed. Callers hold the lock that `replace`'s callers hold, so a temporary
    /// being filled by a live run is never taken for a leftover.
    @discardableResult
    public static func removeLeftoverTemporaries() -> [String] {
        temporaries().filter { (try? destroy($0)) != nil }
    }

    public static let maxNameLength = 31

    static func validate(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count <= maxNameLength, !name.contains(" ") else {
            throw IPSetError(operation: "name", set: name, code: EINVAL)
        }
    }
}
