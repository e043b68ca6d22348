import Foundation
import NetNS

/// True when the tests run as root; privileged suites are `.enabled(if: TestEnv.isRoot)`.
public enum TestEnv {
    public static var isRoot: Bool { geteuid() == 0 }
    /// `ip` is the oracle the privileged tests compare against.
    public static var hasIPTool: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/usr/bin/ip") }
    public static var privileged: Bool { isRoot && hasIPTool }

    /// Directory of the package's built executables (next to the test bundle), or $DOCKNFV_BIN_DIR.
    public static var binDir: URL {
        if let dir = ProcessInfo.processInfo.environment["DOCKNFV_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" && !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
        if url.path != "/" { return url.deletingLastPathComponent() }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    public static func binary(_ name: String) -> String { binDir.appendingPathComponent(name).path }
}

/// The result of running a command.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { status == 0 }
    public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// Runs a command and throws with its output when it fails.
@discardableResult
public func mustRun(_ arguments: [String]) throws -> String {
    let result = try runCommand(arguments)
    guard result.succeeded else { throw TestFailure("\(arguments.joined(separator: " ")) failed: \(result)") }
    return result.stdout
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A throwaway network namespace made with `ip netns add`, deleted by `delete()`.
public final class TestNamespace: @unchecked Sendable { // immutable after init
    public let name: String
    public var path: String { NetworkNamespace.path(named: name) }

    /// `dnfvt-` (what scripts/test clears), or $DOCKNFV_TEST_NETNS_PREFIX to keep a run's namespaces
    /// apart from another's.
    static let prefix = ProcessInfo.processInfo.environment["DOCKNFV_TEST_NETNS_PREFIX"] ?? "dnfvt-"

    public init(_ role: String = "ns") throws {
        name = "\(Self.prefix)\(role.prefix(6))-\(UInt32.random(in: 0..<UInt32.max) % 1_000_000)"
        try TestSupport.mustRun(["ip", "netns", "add", name])
        try TestSupport.mustRun(["ip", "-n", name, "link", "set", "lo", "up"])
    }

    /// Runs a command inside the namespace.
    @discardableResult
    public func run(_ arguments: [String]) throws -> CommandResult {
        try runCommand(["ip", "netns", "exec", name] + arguments)
    }

    @discardableResult
    public func mustRun(_ arguments: [String]) throws -> String {
        try TestSupport.mustRun(["ip", "netns", "exec", name] + arguments)
    }

    /// `ip -n NAME ARGS…` (the oracle).
    public func ip(_ arguments: String) throws -> String {
        try TestSupport.mustRun(["ip", "-n", name] + arguments.split(separator: " ").map(String.init))
    }

    public func delete() {
        _ = try? runCommand(["ip", "netns", "delete", name])
    }
}

/// Creates namespaces, runs `body`, and deletes them whatever happens.
public func withNamespaces<T>(_ roles: [String], _ body: ([TestNamespace]) throws -> T) throws -> T {
    var made: [TestNamespace] = []
    defer { made.forEach { $0.delete() } }
    for role in roles { made.append(try TestNamespace(role)) }
    return try body(made)
}

/// Connects two namespaces with a veth pair and optional addresses (`10.0.0.1/24`).
public func connect(_ a: TestNamespace, _ aName: String, _ aAddresses: [String],
                    _ b: TestNamespace, _ bName: String, _ bAddresses: [String]) throws {
    let tmpA = "dv\(UInt32.random(in: 0..<1_000_000))", tmpB = "dv\(UInt32.random(in: 0..<1_000_000))"
    try mustRun(["ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB])
    try mustRun(["ip", "link", "set", tmpA, "netns", a.name, "name", aName])
    try mustRun(["ip", "link", "set", tmpB, "netns", b.name, "name", bName])
    for (ns, name, addresses) in [(a, aName, aAddresses), (b, bName, bAddresses)] {
        for address in addresses {
            _ = try ns.ip("addr add \(address) dev \(name)\(address.contains(":") ? " nodad" : "")")
        }
        _ = try ns.ip("link set \(name) up")
    }
    // The kernel gives each end its IPv6 link-local address (and fe80::/64 route) only once it
    // has seen the carrier, asynchronously: wait for both, so a test's "before" snapshot is final.
    for (ns, name) in [(a, aName), (b, bName)] {
        let settled = try waitUntil(timeout: 5) { try ns.ip("-6 route show dev \(name)").contains("fe80::/64") }
        if !settled { throw TestFailure("\(name) in \(ns.name) got no IPv6 link-local route within 5 s") }
    }
}
