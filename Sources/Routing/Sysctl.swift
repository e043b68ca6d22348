#if canImport(Glibc)
import Glibc
#endif

/// A `net.*` sysctl, named by its path components so interface names with dots
/// (`eth0.100`) stay unambiguous. `/proc/sys/net` shows the namespace of the thread that
/// opens it, so reads and writes must happen on a thread inside the target namespace.
public struct Sysctl: Hashable, Sendable, CustomStringConvertible {
    public let components: [String]

    public init(_ components: [String]) { self.components = components }

    public static let ipv4Forwarding = Sysctl(["net", "ipv4", "ip_forward"])
    public static let ipv6ForwardingAll = Sysctl(["net", "ipv6", "conf", "all", "forwarding"])
    public static func ipv6Forwarding(_ interface: String) -> Sysctl { Sysctl(["net", "ipv6", "conf", interface, "forwarding"]) }
    public static func rpFilter(_ interface: String) -> Sysctl { Sysctl(["net", "ipv4", "conf", interface, "rp_filter"]) }
    /// Lets packets from 127.0.0.0/8 be routed out of `interface` (DNAT of the host's localhost).
    public static func routeLocalnet(_ interface: String) -> Sysctl { Sysctl(["net", "ipv4", "conf", interface, "route_localnet"]) }
    /// IPv6 router advertisements are ignored once forwarding is on unless accept_ra = 2.
    public static func acceptRA(_ interface: String) -> Sysctl { Sysctl(["net", "ipv6", "conf", interface, "accept_ra"]) }

    /// `net.ipv4.conf.<interface>.rp_filter` (or `all` / `default`).
    public var isRPFilter: Bool { components.count == 5 && components.starts(with: ["net", "ipv4", "conf"]) && components[4] == "rp_filter" }

    public var path: String { "/proc/sys/" + components.joined(separator: "/") }
    /// Dotted form as `sysctl` prints it (dots inside a component become slashes there).
    public var description: String {
        components.map { $0.replacingDots() }.joined(separator: ".")
    }

    func read() throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RoutingError.sysctl(key: description, call: "open", errno: errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = Glibc.read(fd, &buffer, buffer.count)
        guard count >= 0 else { throw RoutingError.sysctl(key: description, call: "read", errno: errno) }
        return String(decoding: buffer[..<count], as: UTF8.self).trimming(" \t\n")
    }

    func write(_ value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RoutingError.sysctl(key: description, call: "open", errno: errno) }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        let count = Glibc.write(fd, bytes, bytes.count)
        guard count == bytes.count else { throw RoutingError.sysctl(key: description, call: "write", errno: errno) }
    }
}

extension String {
    func replacingDots() -> String { String(map { $0 == "." ? "/" : $0 }) }
}
