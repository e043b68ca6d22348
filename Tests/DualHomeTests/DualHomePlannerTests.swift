import Testing
import DualHome
import Routing

@Suite("Dual-home planner")
struct DualHomePlannerTests {
    let left = ObservedInterface(name: "eth1", addresses: [InterfaceAddress("10.1.0.2/24")!, InterfaceAddress("fd01::2/64")!,
                                                            InterfaceAddress("fe80::1/64")!])
    let right = ObservedInterface(name: "eth0", addresses: [InterfaceAddress("10.2.0.2/24")!, InterfaceAddress("fd02::2/64")!],
                                  discoveredGateways: [IPAddress("10.2.0.1")!])

    func config(left: [String] = ["10.1.0.1", "fd01::1"], right: [String] = ["10.2.0.1", "fd02::1"]) -> DualHomeConfig {
        var config = DualHomeConfig()
        config.left.gateways = left.map { IPAddress($0)! }
        config.right.gateways = right.map { IPAddress($0)! }
        return config
    }

    @Test func defaultsMatchDockwall() {
        let config = DualHomeConfig()
        #expect(config.left.interface == "eth1")
        #expect(config.right.interface == "eth0")
        #expect(config.left.table == 101)
        #expect(config.right.table == 102)
        #expect(config.mode == .route)
    }

    @Test func routeModeCrossesTheTablesForBothFamilies() throws {
        let plan = try DualHomePlanner.plan(config(), left: left, right: right)
        let routes = plan.routes.map { $0.route.description }
        #expect(routes == [
            "10.1.0.0/24 dev eth1 table 101", "fd01::/64 dev eth1 table 101",
            "default via 10.1.0.1 dev eth1 table 101", "default (ipv6) via fd01::1 dev eth1 table 101",
            "10.2.0.0/24 dev eth0 table 102", "fd02::/64 dev eth0 table 102",
            "default via 10.2.0.1 dev eth0 table 102", "default (ipv6) via fd02::1 dev eth0 table 102",
        ])
        #expect(plan.routes.allSatisfy { !$0.replace && $0.route.protocol == docknfvRouteProtocol })
        #expect(plan.routes.filter { $0.route.gateway == nil }.allSatisfy { $0.route.scope == .link })
        #expect(plan.rules.map(\.description) == [
            "ipv4 rule 100: from all iif eth1 lookup 102", "ipv4 rule 100: from all iif eth0 lookup 101",
            "ipv6 rule 100: from all iif eth1 lookup 102", "ipv6 rule 100: from all iif eth0 lookup 101",
        ])
        #expect(plan.sysctls.map(\.description) == [
            "net.ipv4.ip_forward = 1", "net.ipv4.conf.eth1.rp_filter = 2", "net.ipv4.conf.eth0.rp_filter = 2",
            "net.ipv6.conf.all.forwarding = 1",
        ])
    }

    @Test func linkLocalAddressesGiveNoConnectedRoute() throws {
        let plan = try DualHomePlanner.plan(config(), left: left, right: right)
        #expect(!plan.routes.contains { $0.route.destination.description.hasPrefix("fe80") })
    }

    @Test func discoveredGatewayIsUsedWhenNoneIsConfigured() throws {
        let plan = try DualHomePlanner.plan(config(right: []), left: left, right: right)
        #expect(plan.routes.contains { $0.route.description == "default via 10.2.0.1 dev eth0 table 102" })
        // No IPv6 gateway on the right: table 102 still gets its IPv6 connected route, and IPv6
        // traffic entering left is steered there.
        #expect(!plan.routes.contains { $0.route.table == 102 && $0.route.family == .v6 && $0.route.destination.isDefault })
        #expect(plan.rules.contains { $0.family == .v6 && $0.table == 102 })
    }

    @Test func configuredGatewayWinsOverDiscovered() throws {
        var right = self.right
        right.discoveredGateways = [IPAddress("10.2.0.99")!]
        let plan = try DualHomePlanner.plan(config(), left: left, right: right)
        #expect(plan.routes.contains { $0.route.description == "default via 10.2.0.1 dev eth0 table 102" })
        #expect(!plan.routes.contains { $0.route.gateway == IPAddress("10.2.0.99") })
    }

    @Test func ruleOnlyWhereTheTargetTableHasThatFamily() throws {
        let v4Left = ObservedInterface(name: "eth1", addresses: [InterfaceAddress("10.1.0.2/24")!])
        let plan = try DualHomePlanner.plan(config(left: ["10.1.0.1"]), left: v4Left, right: right)
        #expect(plan.rules.filter { $0.family == .v6 }.map(\.description) == ["ipv6 rule 100: from all iif eth1 lookup 102"])
    }

    @Test func ipv6LinkLocalGatewayIsAccepted() throws {
        let plan = try DualHomePlanner.plan(config(left: ["10.1.0.1", "fe80::1"]), left: left, right: right)
        #expect(plan.routes.contains { $0.route.description == "default (ipv6) via fe80::1 dev eth1 table 101" })
    }

    @Test(arguments: [("10.9.0.1", "left"), ("fd09::1", "left"), ("10.2.0.2", "right")])
    func gatewayOutsideTheSubnetsIsRejected(gateway: String, side: String) {
        let config = side == "left" ? config(left: [gateway]) : config(right: [gateway])
        #expect(throws: DualHomeError.self) { try DualHomePlanner.plan(config, left: left, right: right) }
        do {
            _ = try DualHomePlanner.plan(config, left: left, right: right)
        } catch {
            guard case .invalidField(let field, let value, _) = error else { Issue.record("\(error)"); return }
            #expect(field == "\(side).gateway")
            #expect(value == gateway)
        }
    }

    @Test(arguments: [(UInt32(0), "unspec"), (253, "default"), (254, "main"), (255, "local")])
    func reservedTablesAreRejected(table: UInt32, name: String) {
        var config = config()
        config.left.table = table
        #expect(throws: DualHomeError.invalidField(field: "left.table", value: String(table),
                                                    reason: "table \(table) is the kernel's reserved \"\(name)\" table")) {
            try DualHomePlanner.plan(config, left: left, right: right)
        }
    }

    @Test func equalTablesAreRejected() {
        var config = config()
        config.right.table = 101
        #expect(throws: DualHomeError.invalidField(field: "right.table", value: "101", reason: "left and right tables must differ")) {
            try DualHomePlanner.plan(config, left: left, right: right)
        }
    }

    @Test(arguments: [UInt32(0), 32766, 40000])
    func rulePriorityMustSortBeforeMain(priority: UInt32) {
        var config = config()
        config.rulePriority = priority
        #expect(throws: DualHomeError.self) { try DualHomePlanner.plan(config, left: left, right: right) }
    }

    @Test(arguments: ["", "a/b", "has space", "sixteen-chars-xx", "eth:0"])
    func badInterfaceNamesAreRejected(name: String) {
        var config = config()
        config.left.interface = name
        #expect(throws: DualHomeError.self) { try config.validate() }
    }

    @Test func sameInterfaceOnBothSidesIsRejected() {
        var config = config()
        config.left.interface = "eth0"
        #expect(throws: DualHomeError.self) { try config.validate() }
    }

    @Test func missingGatewayIsReportedForTheSide() {
        let plain = ObservedInterface(name: "eth1", addresses: [InterfaceAddress("10.1.0.2/24")!])
        #expect(throws: DualHomeError.noGateway(side: "left", interface: "eth1")) {
            try DualHomePlanner.plan(config(left: []), left: plain, right: right)
        }
    }

    @Test func interfaceWithoutAddressIsReported() {
        let bare = ObservedInterface(name: "eth1", addresses: [InterfaceAddress("fe80::2/64")!])
        #expect(throws: DualHomeError.noAddress(side: "left", interface: "eth1")) {
            try DualHomePlanner.plan(config(), left: bare, right: right)
        }
    }

    @Test func vpnModeOnlyReplacesTheMainDefaultOnTheRight() throws {
        var config = config()
        config.mode = .vpn
        let plan = try DualHomePlanner.plan(config, left: ObservedInterface(name: "eth1", addresses: []), right: right)
        #expect(plan.rules.isEmpty)
        #expect(plan.routes.map(\.route.description) == ["default via 10.2.0.1 dev eth0 table main",
                                                          "default (ipv6) via fd02::1 dev eth0 table main"])
        #expect(plan.routes.allSatisfy { $0.replace })
        #expect(plan.sysctls.map(\.description) == ["net.ipv4.ip_forward = 1", "net.ipv6.conf.all.forwarding = 1"])
    }

    @Test func vpnModeAllowsEqualTables() throws {
        var config = config()
        config.mode = .vpn
        config.right.table = config.left.table
        _ = try DualHomePlanner.plan(config, left: ObservedInterface(name: "eth1", addresses: []), right: right)
    }

    @Test func planningIsDeterministic() throws {
        let a = try DualHomePlanner.plan(config(), left: left, right: right)
        let b = try DualHomePlanner.plan(config(), left: left, right: right)
        #expect(a == b)
    }
}
