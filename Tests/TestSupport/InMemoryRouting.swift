import Routing
#if canImport(Glibc)
import Glibc
#endif

/// An in-memory `RoutingBackend` for sequencing tests: a model of the kernel's route, rule and
/// sysctl tables that can be told to fail the Nth write.
public final class InMemoryRouting: RoutingBackend {
    public init() {}
    public struct InjectedFailure: Error, CustomStringConvertible { public var description: String { "injected failure" } }

    public var linkList: [Link] = []
    public var addressList: [LinkAddress] = []
    public var routeList: [Route] = []
    public var ruleList: [PolicyRule] = []
    public var sysctlValues: [Sysctl: String] = [:]
    /// Fail the write with this 1-based number (counting every add/delete/write).
    public var failOnWrite: Int?
    /// /proc/sys mounted read-only, as container engines do: sysctl writes fail with EROFS.
    public var readOnlySysctls = false
    public private(set) var writes = 0

    private func write() throws {
        writes += 1
        if writes == failOnWrite { throw InjectedFailure() }
    }

    public func links() throws -> [Link] { linkList }
    public func addresses() throws -> [LinkAddress] { addressList }
    public func routes(family: IPFamily, table: UInt32?) throws -> [Route] {
        routeList.filter { $0.family == family && (table == nil || $0.table == table) }
    }
    public func rules(family: IPFamily) throws -> [PolicyRule] { ruleList.filter { $0.family == family } }
    public func setLink(_ name: String, up: Bool?, mtu: UInt32?) throws { try write() }
    public func addAddress(_ address: InterfaceAddress, interface: String) throws {
        try write(); addressList.append(LinkAddress(interface: interface, address: address))
    }
    public func deleteAddress(_ address: InterfaceAddress, interface: String) throws {
        try write(); addressList.removeAll { $0.address == address && $0.interface == interface }
    }
    public func addRoute(_ route: Route, replace: Bool) throws {
        try write()
        if replace { routeList.removeAll { $0.sameSlot(as: route) } }
        routeList.append(route)
    }
    public func deleteRoute(_ route: Route) throws { try write(); routeList.removeAll { $0.sameEffect(as: route) } }
    public func addRule(_ rule: PolicyRule) throws { try write(); ruleList.append(rule) }
    public func deleteRule(_ rule: PolicyRule) throws {
        try write()
        if let index = ruleList.firstIndex(where: { $0.sameEffect(as: rule) }) { ruleList.remove(at: index) }
    }
    public func readSysctl(_ key: Sysctl) throws -> String { sysctlValues[key] ?? "0" }
    public func writeSysctl(_ key: Sysctl, value: String) throws {
        if readOnlySysctls { throw RoutingError.sysctl(key: key.description, call: "open", errno: EROFS) }
        try write(); sysctlValues[key] = value
    }

    public static func vnf() -> InMemoryRouting {
        let backend = InMemoryRouting()
        backend.linkList = [Link(name: "eth1", index: 2, isUp: true, hasCarrier: true, mtu: 1500),
                            Link(name: "eth0", index: 3, isUp: true, hasCarrier: true, mtu: 1500)]
        backend.addressList = [LinkAddress(interface: "eth1", address: InterfaceAddress("10.1.0.2/24")!),
                               LinkAddress(interface: "eth0", address: InterfaceAddress("10.2.0.2/24")!)]
        backend.routeList = [Route(table: RoutingTable.main, destination: .default(.v4), gateway: IPAddress("10.2.0.1"),
                                   interface: "eth0", metric: 0, protocol: 3)]
        return backend
    }
}
