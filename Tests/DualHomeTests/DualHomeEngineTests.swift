import Testing
import DualHome
import Routing
import TestSupport

@Suite("Dual-home engine (sequencing and rollback)")
struct DualHomeEngineTests {
    func config() -> DualHomeConfig {
        var config = DualHomeConfig()
        config.left.gateways = [IPAddress("10.1.0.1")!]
        return config
    }

    @Test func observesTheGatewayTheNetworkGave() throws {
        let engine = DualHomeEngine(InMemoryRouting.vnf())
        let observed = try engine.observe(interface: "eth0")
        #expect(observed.discoveredGateways == [IPAddress("10.2.0.1")!])
        #expect(observed.addresses == [InterfaceAddress("10.2.0.2/24")!])
        #expect(throws: RoutingError.noSuchInterface("eth9")) { try engine.observe(interface: "eth9") }
    }

    @Test func applyTwiceChangesNothingTheSecondTime() throws {
        let backend = InMemoryRouting.vnf()
        let engine = DualHomeEngine(backend)
        let plan = try engine.plan(config())
        let first = try engine.apply(plan)
        #expect(first.count == plan.routes.count + plan.rules.count + plan.sysctls.count)
        let writes = backend.writes
        #expect(try engine.apply(plan).isEmpty)
        #expect(backend.writes == writes)
        #expect(try engine.check(plan).isEmpty)
    }

    /// Whichever write fails, the backend ends exactly as it started.
    @Test(arguments: 1...9)
    func failureAtAnyStepRollsEverythingBack(failAt: Int) throws {
        let backend = InMemoryRouting.vnf()
        let before = (backend.routeList, backend.ruleList, backend.sysctlValues)
        let engine = DualHomeEngine(backend)
        let plan = try engine.plan(config())
        #expect(plan.routes.count + plan.rules.count + plan.sysctls.count == 9)
        backend.failOnWrite = failAt
        #expect(throws: DualHomeError.self) { try engine.apply(plan) }
        #expect(backend.routeList == before.0)
        #expect(backend.ruleList == before.1)
        #expect(backend.sysctlValues.filter { $0.value != "0" } == before.2)
    }

    @Test func failureNamesTheStep() throws {
        let backend = InMemoryRouting.vnf()
        let engine = DualHomeEngine(backend)
        let plan = try engine.plan(config())
        backend.failOnWrite = plan.routes.count + 1 // the first rule
        do {
            try engine.apply(plan)
            Issue.record("apply succeeded")
        } catch let DualHomeError.applyFailed(step, cause, failures) {
            #expect(step == "rule ipv4 rule 100: from all iif eth1 lookup 102")
            #expect(cause == "injected failure")
            #expect(failures.isEmpty)
        }
    }

    @Test func checkReportsWhatIsMissing() throws {
        let backend = InMemoryRouting.vnf()
        let engine = DualHomeEngine(backend)
        let plan = try engine.plan(config())
        try engine.apply(plan)
        backend.ruleList.removeFirst()
        backend.sysctlValues[.ipv4Forwarding] = "0"
        let problems = try engine.check(plan).map(\.description)
        #expect(problems == ["rule ipv4 rule 100: from all iif eth1 lookup 102: missing", "sysctl net.ipv4.ip_forward: is 0, want 1"])
    }

    /// Under a container engine /proc/sys is read-only: settings made with `--sysctl` are accepted
    /// (loose or no reverse-path filtering through `conf.all` as well as per interface).
    @Test(arguments: [["net.ipv4.conf.all.rp_filter": "2"], ["net.ipv4.conf.eth0.rp_filter": "2", "net.ipv4.conf.eth1.rp_filter": "2"], [:]])
    func readOnlySysctlsAlreadySetAreAccepted(rpFilter: [String: String]) throws {
        let backend = InMemoryRouting.vnf()
        backend.readOnlySysctls = true
        backend.sysctlValues[.ipv4Forwarding] = "1"
        for (key, value) in rpFilter { backend.sysctlValues[Sysctl(key.split(separator: ".").map(String.init))] = value }
        let engine = DualHomeEngine(backend)
        let plan = try engine.plan(config())
        let changes = try engine.apply(plan)
        #expect(changes.count == plan.routes.count + plan.rules.count)
        #expect(try engine.check(plan).isEmpty)
    }

    /// What is missing is named as the exact `--sysctl` flags, and the routing is rolled back.
    @Test func readOnlySysctlsNotSetNameTheFlags() throws {
        let backend = InMemoryRouting.vnf()
        backend.readOnlySysctls = true
        backend.sysctlValues[.rpFilter("eth1")] = "1"
        let before = (backend.routeList, backend.ruleList)
        let engine = DualHomeEngine(backend)
        #expect(throws: DualHomeError.sysctlsNotSet(["net.ipv4.ip_forward is 0", "net.ipv4.conf.eth1.rp_filter is 1"],
                                                    flags: ["--sysctl net.ipv4.ip_forward=1", "--sysctl net.ipv4.conf.all.rp_filter=2"],
                                                    rollbackFailures: [])) {
            try engine.apply(try engine.plan(self.config()))
        }
        #expect(backend.routeList == before.0 && backend.ruleList == before.1)
        #expect(DualHomeError.sysctlsNotSet(["net.ipv4.ip_forward is 0"], flags: ["--sysctl net.ipv4.ip_forward=1"], rollbackFailures: []).description
                == "/proc/sys is read-only here (container engines mount it so) and net.ipv4.ip_forward is 0; start the container with --sysctl net.ipv4.ip_forward=1")
    }

    @Test func removeTakesOnlyWhatDocknfvOwns() throws {
        let backend = InMemoryRouting.vnf()
        let foreignRoute = Route(table: 101, destination: IPPrefix("192.0.2.0/24")!, gateway: IPAddress("10.1.0.1"), interface: "eth1", protocol: 4)
        let foreignRule = PolicyRule(family: .v4, priority: 50, table: 101, fwmark: 7, protocol: 0)
        backend.routeList.append(foreignRoute)
        backend.ruleList.append(foreignRule)
        let engine = DualHomeEngine(backend)
        try engine.apply(try engine.plan(config()))
        let removed = try engine.remove(config())
        #expect(removed.count == 6) // 4 routes + 2 rules
        #expect(backend.routeList.contains(foreignRoute))
        #expect(backend.ruleList == [foreignRule])
        #expect(backend.routeList.filter { $0.protocol == docknfvRouteProtocol }.isEmpty)
        #expect(try engine.remove(config()).isEmpty)
    }

    @Test func vpnModeReplacesTheMainDefaultAndRollbackRestoresIt() throws {
        let backend = InMemoryRouting.vnf()
        var config = config()
        config.mode = .vpn
        config.right.gateways = [IPAddress("10.2.0.254")!]
        let original = backend.routeList
        let engine = DualHomeEngine(backend)
        let changes = try engine.apply(try engine.plan(config))
        #expect(backend.routeList.map(\.gateway) == [IPAddress("10.2.0.254")])
        #expect(engine.rollback(changes).isEmpty)
        #expect(backend.routeList == original)
    }
}
