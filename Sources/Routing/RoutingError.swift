import CLibNL

/// libnl's `NLE_*` codes (libnl returns them negated). Kept as a typed value so callers can
/// match on `.exists` / `.notFound` instead of comparing magic numbers.
public struct NetlinkCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    /// The kernel's errno behind the code, when libnl has no code of its own for it: libnl maps
    /// e.g. ENETUNREACH to `NLE_FAILURE`, "Unspecific failure", which tells nobody anything.
    public let kernelErrno: Int32?
    public init(rawValue: Int32) { self.rawValue = abs(rawValue); kernelErrno = nil }
    public init(rawValue: Int32, kernelErrno: Int32?) { self.rawValue = abs(rawValue); self.kernelErrno = kernelErrno }

    // The code alone identifies it (`.exists` matches whatever errno came with it).
    public static func == (a: NetlinkCode, b: NetlinkCode) -> Bool { a.rawValue == b.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    public static let exists = NetlinkCode(rawValue: NLE_EXIST)
    public static let objectNotFound = NetlinkCode(rawValue: NLE_OBJ_NOTFOUND)
    public static let noDevice = NetlinkCode(rawValue: NLE_NODEV)
    public static let noAddress = NetlinkCode(rawValue: NLE_NOADDR)
    public static let invalid = NetlinkCode(rawValue: NLE_INVAL)
    public static let range = NetlinkCode(rawValue: NLE_RANGE)
    public static let permission = NetlinkCode(rawValue: NLE_PERM)
    public static let noAccess = NetlinkCode(rawValue: NLE_NOACCESS)
    public static let busy = NetlinkCode(rawValue: NLE_BUSY)
    public static let notSupported = NetlinkCode(rawValue: NLE_OPNOTSUPP)
    public static let dumpInterrupted = NetlinkCode(rawValue: NLE_DUMP_INTR)

    public static let failure = NetlinkCode(rawValue: NLE_FAILURE)

    /// libnl's own text for the code (`nl_geterror`), or the kernel's for an errno libnl lumps
    /// together as `NLE_FAILURE`.
    public var description: String {
        if let kernelErrno, kernelErrno > 0 { return String(cString: strerror(kernelErrno)) }
        return String(cString: nl_geterror(rawValue))
    }
}

/// Errors of the routing module. Each names the object it was about.
public enum RoutingError: Error, Equatable, CustomStringConvertible {
    /// A libnl call failed.
    case netlink(call: String, object: String, code: NetlinkCode)
    /// No interface with that name (or index) exists in this namespace.
    case noSuchInterface(String)
    /// A different object already occupies the slot we need (never overwritten silently).
    case conflict(wanted: String, existing: String)
    /// Reading or writing a sysctl failed.
    case sysctl(key: String, call: String, errno: Int32)
    /// A value that cannot be expressed (e.g. an unparsable sysctl value).
    case invalid(String)

    public var description: String {
        switch self {
        case .netlink(let call, let object, let code):
            if let errno = code.kernelErrno, errno > 0 { return "\(call) for \(object) failed: \(code) (errno \(errno))" }
            return "\(call) for \(object) failed: \(code) (NLE \(code.rawValue))"
        case .noSuchInterface(let name):
            return "interface \(name) does not exist"
        case .conflict(let wanted, let existing):
            return "cannot install \(wanted): the kernel already holds \(existing), which docknfv does not own"
        case .sysctl(let key, let call, let errno):
            return "sysctl \(key): \(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .invalid(let text):
            return text
        }
    }

    /// The libnl code, when the error came from libnl.
    public var netlinkCode: NetlinkCode? {
        if case .netlink(_, _, let code) = self { return code }
        return nil
    }
}

/// Calls a libnl function returning 0 or a negative `NLE_*`, mapping failure to `RoutingError`.
@inline(__always)
func nlCheck(_ rc: Int32, _ call: String, _ object: @autoclosure () -> String) throws {
    if rc < 0 { throw RoutingError.netlink(call: call, object: object(), code: NetlinkCode(rawValue: rc)) }
}
