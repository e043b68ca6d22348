import Foundation
import Testing
import NetNS
import Routing
import TestSupport

/// Every routing operation against the real kernel in a throwaway namespace, with `ip` as oracle.
@Suite("libnl routing", .enabled(if: TestEnv.privileged))
struct LibNLRoutingTests {
    /// A namespace with a veth whose far end sits in a second namespace.
    func withLab(_ body: (TestNamespace, RoutingOperations) throws -> Void) throws {
        try withNamespaces(["rt", "peer"]) { ns in
            try connect(ns[0], "left0", ["10.10.0.2/24", "fd10::2/64"], ns[1], "peer0", ["10.10.0.1/24", "fd10::1/64"])
            try NetworkNamespace.run(path: ns[0].path) {
                try body(ns[0], RoutingOperations(try LibNLRouting()))
            }
        }
    }

    @Test func linksAndAddresses() throws {
        try withLab { ns, ops throws in
            let link = try #require(try ops.backend.link(named: "left0"))
            #expect(link.isUp)
            #expect(link.mtu == 1500)
            #expect(try ops.backend.link(named: "nope0") == nil)
            #expect(try ops.backend.link(index: link.index)?.name == "left0")
            #expect(try ops.backend.link(index: 99999) == nil)
            let addresses = try ops.backend.addresses(of: "left0").map(\.address.description)
            #expect(addresses.contains("10.10.0.2/24"))
            #expect(addresses.contains("fd10::2/64"))

            let extra = InterfaceAddress("10.20.0.5/16")!
            #expect(try ops.ensure(address: extra, on: "left0") == .created)
            #expect(try ops.ensure(address: extra, on: "left0") == .unchanged)
            #expect(try ns.ip("-4 addr show dev left0").contains("10.20.0.5/16"))
            #expect(try ops.remove(address: extra, from: "left0"))
            #expect(try !ops.remove(address: extra, from: "left0"))
            #expect(try !ns.ip("-4 addr show dev left0").contains("10.20.0.5"))
        }
    }

    @Test func linkUpDownAndMTU() throws {
        try withLab { ns, ops throws in
            #expect(try ops.ensureLink("left0", up: false) == .changed(previous: "up"))
            #expect(try ns.ip("link show dev left0").contains("state DOWN"))
            #expect(try ops.ensureLink("left0", up: false) == .unchanged)
            #expect(try ops.ensureLink("left0", up: true, mtu: 1400) == .changed(previous: "down, mtu 1500"))
            #expect(try ns.ip("link show dev left0").contains("mtu 1400"))
            #expect(try ops.ensureLink("left0", up: true, mtu: 1400) == .unchanged)
            #expect(throws: RoutingError.noSuchInterface("ghost0")) { try ops.ensureLink("ghost0", up: true) }
        }
    }

    @Test(arguments: [
        ("default", "10.10.0.1", "ipv4"),
        ("192.0.2.0/24", "10.10.0.1", "ipv4"),
        ("default", "fd10::1", "ipv6"),
        ("2001:db8:5::/48", "fd10::1", "ipv6"),
    ])
    func routesInATableAreIdempotentAndRemovable(destination: String, gateway: String, family: String) throws {
        try withLab { ns, ops throws in
            let fam: IPFamily = family == "ipv4" ? .v4 : .v6
            let route = Route(table: 1234, destination: IPPrefix(destination, family: fam)!,
                              gateway: IPAddress(gateway)!, interface: "left0", metric: 50)
            #expect(try ops.ensure(route) == .created)
            #expect(try ops.ensure(route) == .unchanged)
            #expect(try ops.check(route))
            let shown = try ns.ip("-\(fam == .v4 ? 4 : 6) route show table 1234")
            #expect(shown.contains("\(destination) via \(gateway) dev left0"))
            #expect(shown.contains("proto 78"))
            #expect(shown.contains("metric 50"))
            #expect(try ops.remove(route))
            #expect(try !ops.remove(route))
            #expect(try !ops.check(route))
            #expect(try ns.ip("-\(fam == .v4 ? 4 : 6) route show table 1234").isEmpty)
        }
    }

    @Test func connectedRouteWithLinkScope() throws {
        try withLab { ns, ops throws in
            let route = Route(table: 77, destination: IPPrefix("10.10.0.0/24")!, interface: "left0", scope: .link)
            #expect(try ops.ensure(route) == .created)
            #expect(try ns.ip("route show table 77").contains("10.10.0.0/24 dev left0 proto 78 scope link"))
            #expect(try ops.ensure(route) == .unchanged)
        }
    }

    @Test func foreignRouteInTheSlotIsAConflictUnlessReplacing() throws {
        try withLab { ns, ops throws in
            _ = try ns.ip("route add 198.51.100.0/24 via 10.10.0.1 dev left0 table 55")
            let ours = Route(table: 55, destination: IPPrefix("198.51.100.0/24")!, gateway: IPAddress("10.10.0.3")!, interface: "left0")
            #expect(throws: RoutingError.self) { try ops.ensure(ours) }
            #expect(try ns.ip("route show table 55").contains("via 10.10.0.1"))
            guard case .replaced(let previous) = try ops.ensure(ours, replace: true) else {
                Issue.record("expected a replacement"); return
            }
            #expect(previous.gateway == IPAddress("10.10.0.1"))
            #expect(try ns.ip("route show table 55").contains("via 10.10.0.3"))
        }
    }

    @Test func routeViaMissingInterfaceNamesIt() throws {
        try withLab { _, ops throws in
            let route = Route(table: 9, destination: .default(.v4), gateway: IPAddress("10.10.0.1")!, interface: "ghost0")
            #expect(throws: RoutingError.noSuchInterface("ghost0")) { try ops.ensure(route) }
        }
    }

    @Test func unreachableGatewayIsATranslatedNetlinkError() throws {
        try withLab { _, ops throws in
            let route = Route(table: 9, destination: .default(.v4), gateway: IPAddress("203.0.113.9")!, interface: "left0")
            do {
                try ops.ensure(route)
                Issue.record("the kernel accepted an off-link gateway")
            } catch let error as RoutingError {
                let code = try #require(error.netlinkCode)
                #expect(code.rawValue > 0)
                #expect(error.description.contains("rtnl_route_add"))
                #expect(error.description.contains("203.0.113.9"))
            }
        }
    }

    @Test(arguments: [IPFamily.v4, .v6])
    func rulesWithEverySelector(family: IPFamily) throws {
        try withLab { ns, ops throws in
            let from = family == .v4 ? IPPrefix("10.10.0.0/24")! : IPPrefix("fd10::/64")!
            let to = family == .v4 ? IPPrefix("192.0.2.0/24")! : IPPrefix("2001:db8::/32")!
            let rules = [
                PolicyRule(family: family, priority: 200, table: 101, inputInterface: "left0"),
                PolicyRule(family: family, priority: 201, table: 102, outputInterface: "left0"),
                PolicyRule(family: family, priority: 202, table: 103, from: from, to: to),
                PolicyRule(family: family, priority: 203, table: 104, fwmark: 0x10, fwmask: 0xff),
            ]
            for rule in rules {
                #expect(try ops.ensure(rule) == .created)
                #expect(try ops.ensure(rule) == .unchanged)
                #expect(try ops.check(rule))
            }
            let shown = try ns.ip("-\(family == .v4 ? 4 : 6) rule show")
            #expect(shown.contains("200:\tfrom all iif left0 lookup 101 proto 78"))
            #expect(shown.contains("201:\tfrom all oif left0 lookup 102 proto 78"))
            #expect(shown.contains("202:\tfrom \(from) to \(to) lookup 103 proto 78"))
            #expect(shown.contains("203:\tfrom all fwmark 0x10/0xff lookup 104 proto 78"))
            for rule in rules {
                #expect(try ops.remove(rule))
                #expect(try !ops.remove(rule))
            }
            #expect(!(try ns.ip("-\(family == .v4 ? 4 : 6) rule show")).contains("proto 78"))
        }
    }

    @Test func sysctlsAreReadAndWrittenInTheNamespace() throws {
        // Read on this (host) thread before anything happens in the lab namespace.
        let hostBefore = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)
        try withLab { ns, ops throws in
            #expect(try ops.backend.readSysctl(.ipv4Forwarding) == "0")
            #expect(try ops.ensure(.ipv4Forwarding, "1") == .changed(previous: "0"))
            #expect(try ops.ensure(.ipv4Forwarding, "1") == .unchanged)
            // rp_filter of a new interface follows the namespace's default: record it, then the
            // first ensure reports exactly that previous value (or nothing to do if it was 2).
            let rpBefore = try ns.mustRun(["sysctl", "-n", "net.ipv4.conf.left0.rp_filter"]).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try ops.backend.readSysctl(.rpFilter("left0")) == rpBefore)
            #expect(try ops.ensure(.rpFilter("left0"), "2") == (rpBefore == "2" ? .unchanged : .changed(previous: rpBefore)))
            #expect(try ops.ensure(.rpFilter("left0"), "2") == .unchanged)
            #expect(try ops.ensure(.rpFilter("left0"), "1") == .changed(previous: "2"))
            #expect(try ns.mustRun(["sysctl", "-n", "net.ipv4.conf.left0.rp_filter"]).trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(try ops.ensure(.rpFilter("left0"), "2") == .changed(previous: "1"))
            #expect(try ns.mustRun(["sysctl", "-n", "net.ipv4.ip_forward"]).trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(try ns.mustRun(["sysctl", "-n", "net.ipv4.conf.left0.rp_filter"]).trimmingCharacters(in: .whitespacesAndNewlines) == "2")
            #expect(throws: RoutingError.self) { try ops.backend.readSysctl(.rpFilter("ghost0")) }
        }
        // The host's forwarding setting is exactly what it was before.
        let hostAfter = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)
        #expect(["0\n", "1\n"].contains(hostBefore))
        #expect(hostAfter == hostBefore)
    }
}
