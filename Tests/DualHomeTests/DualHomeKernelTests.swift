import Testing
import DualHome
import NetNS
import Routing
import TestSupport

/// Wraps the real libnl backend and fails the Nth write, so rollback is exercised against the kernel.
final class FailingBackend: RoutingBackend {
    struct InjectedFailure: Error, CustomStringConvertible { var description: String { "injected failure" } }
    let real: LibNLRouting
    let failOnWrite: Int
    var writes = 0
    init(_ real: LibNLRouting, failOnWrite: Int) { self.real = real; self.failOnWrite = failOnWrite }
    func write() throws { writes += 1; if writes == failOnWrite { throw InjectedFailure() } }

    func links() throws -> [Link] { try real.links() }
    func addresses() throws -> [LinkAddress] { try real.addresses() }
    func routes(family: IPFamily, table: UInt32?) throws -> [Route] { try real.routes(family: family, table: table) }
    func rules(family: IPFamily) throws -> [PolicyRule] { try real.rules(family: family) }
    func setLink(_ name: String, up: Bool?, mtu: UInt32?) throws { try write(); try real.setLink(name, up: up, mtu: mtu) }
    func addAddress(_ a: InterfaceAddress, interface: String) throws { try write(); try real.addAddress(a, interface: interface) }
    func deleteAddress(_ a: InterfaceAddress, interface: String) throws { try real.deleteAddress(a, interface: interface) }
    func addRoute(_ route: Route, replace: Bool) throws { try write(); try real.addRoute(route, replace: replace) }
    func deleteRoute(_ route: Route) throws { try real.deleteRoute(route) }
    func addRule(_ rule: PolicyRule) throws { try write(); try real.addRule(rule) }
    func deleteRule(_ rule: PolicyRule) throws { try real.deleteRule(rule) }
    func readSysctl(_ key: Sysctl) throws -> String { try real.readSysctl(key) }
    func writeSysctl(_ key: Sysctl, value: String) throws { try write(); try real.writeSysctl(key, value: value) }
}

@Suite("Dual-home in a real namespace", .enabled(if: TestEnv.privileged))
struct DualHomeKernelTests {
    /// A VNF namespace with eth1 (left) and eth0 (right), each a veth to a peer namespace.
    func withVNF(_ body: (TestNamespace) throws -> Void) throws {
        try withNamespaces(["vnf", "left", "right"]) { ns in
            try connect(ns[0], "eth1", ["10.1.0.2/24", "fd01::2/64"], ns[1], "eth0", ["10.1.0.1/24", "fd01::1/64"])
            try connect(ns[0], "eth0", ["10.2.0.2/24", "fd02::2/64"], ns[2], "eth0", ["10.2.0.1/24", "fd02::1/64"])
            try body(ns[0])
        }
    }

    var config: DualHomeConfig {
        var config = DualHomeConfig()
        config.left.gateways = [IPAddress("10.1.0.1")!, IPAddress("fd01::1")!]
        config.right.gateways = [IPAddress("10.2.0.1")!, IPAddress("fd02::1")!]
        return config
    }

    /// Everything routing-related the kernel holds in the namespace, as `ip` prints it — but the
    /// kernel-managed local table, which gains IPv6 anycast entries whenever forwarding is on.
    func snapshot(_ ns: TestNamespace) throws -> String {
        func routes(_ family: String) throws -> String {
            try ns.ip("\(family) route show table all").split(separator: "\n").filter { !$0.contains("table local") }.joined(separator: "\n")
        }
        return try [routes("-4"), routes("-6"), ns.ip("-4 rule show"), ns.ip("-6 rule show"),
             ns.mustRun(["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                         "net.ipv4.conf.eth0.rp_filter", "net.ipv4.conf.eth1.rp_filter"])].joined(separator: "\n--\n")
    }

    @Test func applyIsIdempotentAndRemoveLeavesNothing() throws {
        try withVNF { ns throws in
            let pristine = try snapshot(ns)
            try NetworkNamespace.run(path: ns.path) { () throws in
                let engine = DualHomeEngine(try LibNLRouting())
                let plan = try engine.plan(config)
                #expect(try engine.apply(plan).count == 16)
                #expect(try engine.check(plan).isEmpty)
            }
            let applied = try snapshot(ns)
            #expect(try ns.ip("route show table 101").contains("default via 10.1.0.1 dev eth1 proto 78"))
            #expect(try ns.ip("-6 route show table 102").contains("default via fd02::1 dev eth0 proto 78"))
            #expect(try ns.ip("rule show").contains("100:\tfrom all iif eth1 lookup 102 proto 78"))
            #expect(try ns.ip("-6 rule show").contains("100:\tfrom all iif eth0 lookup 101 proto 78"))

            try NetworkNamespace.run(path: ns.path) { () throws in
                let engine = DualHomeEngine(try LibNLRouting())
                #expect(try engine.apply(try engine.plan(config)).isEmpty)
            }
            #expect(try snapshot(ns) == applied)

            try NetworkNamespace.run(path: ns.path) { () throws in
                #expect(try DualHomeEngine(try LibNLRouting()).remove(config).count == 12)
            }
            // Sysctls stay as set (documented); routes and rules are exactly as before.
            let removed = try snapshot(ns).components(separatedBy: "\n--\n")
            let original = pristine.components(separatedBy: "\n--\n")
            #expect(Array(removed.prefix(4)) == Array(original.prefix(4)))
        }
    }

    @Test func foreignRoutesAndRulesSurviveRemoval() throws {
        try withVNF { ns throws in
            _ = try ns.ip("route add 192.0.2.0/24 via 10.1.0.1 table 101 proto static")
            _ = try ns.ip("rule add fwmark 7 lookup 101 priority 50")
            _ = try ns.ip("rule add iif eth1 lookup 102 priority 100")
            try NetworkNamespace.run(path: ns.path) { () throws in
                let engine = DualHomeEngine(try LibNLRouting())
                try engine.apply(try engine.plan(config))
                try engine.remove(config)
            }
            #expect(try ns.ip("route show table 101").contains("192.0.2.0/24 via 10.1.0.1 dev eth1 proto static"))
            #expect(try ns.ip("rule show").contains("50:\tfrom all fwmark 0x7 lookup 101"))
            #expect(try ns.ip("rule show").contains("100:\tfrom all iif eth1 lookup 102\n"))
            #expect(!(try ns.ip("rule show")).contains("proto 78"))
        }
    }

    @Test(arguments: [1, 5, 9, 14, 16])
    func injectedFailureLeavesTheKernelAsItWas(failAt: Int) throws {
        try withVNF { ns throws in
            let before = try snapshot(ns)
            try NetworkNamespace.run(path: ns.path) { () throws in
                let engine = DualHomeEngine(FailingBackend(try LibNLRouting(), failOnWrite: failAt))
                #expect(throws: DualHomeError.self) { try engine.apply(try engine.plan(config)) }
            }
            #expect(try snapshot(ns) == before)
        }
    }

    @Test func checkSeesARemovedRule() throws {
        try withVNF { ns throws in
            try NetworkNamespace.run(path: ns.path) { () throws in
                let engine = DualHomeEngine(try LibNLRouting())
                try engine.apply(try engine.plan(config))
            }
            _ = try ns.ip("rule del iif eth0 lookup 101 priority 100")
            let problems = try NetworkNamespace.run(path: ns.path) {
                let engine = DualHomeEngine(try LibNLRouting())
                return try engine.check(try engine.plan(config)).map(\.description)
            }
            #expect(problems == ["rule ipv4 rule 100: from all iif eth0 lookup 101: missing"])
        }
    }
}
