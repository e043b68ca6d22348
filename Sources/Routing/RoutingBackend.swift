/// The kernel operations the routing layer needs. `LibNLRouting` implements them with libnl
/// inside the current thread's network namespace; planners and appliers only see this protocol,
/// so their sequencing and rollback logic can be exercised without a kernel.
public protocol RoutingBackend: AnyObject {
    func links() throws -> [Link]
    func addresses() throws -> [LinkAddress]
    /// Unicast routes of one family; `table` nil = every table.
    func routes(family: IPFamily, table: UInt32?) throws -> [Route]
    func rules(family: IPFamily) throws -> [PolicyRule]

    func setLink(_ name: String, up: Bool?, mtu: UInt32?) throws
    func addAddress(_ address: InterfaceAddress, interface: String) throws
    func deleteAddress(_ address: InterfaceAddress, interface: String) throws
    /// `replace` = NLM_F_REPLACE (take over the slot), otherwise NLM_F_EXCL (fail if taken).
    func addRoute(_ route: Route, replace: Bool) throws
    func deleteRoute(_ route: Route) throws
    func addRule(_ rule: PolicyRule) throws
    func deleteRule(_ rule: PolicyRule) throws

    func readSysctl(_ key: Sysctl) throws -> String
    func writeSysctl(_ key: Sysctl, value: String) throws
}

extension RoutingBackend {
    public func link(named name: String) throws -> Link? {
        try links().first { $0.name == name }
    }

    public func link(index: Int32) throws -> Link? {
        try links().first { $0.index == index }
    }

    public func requireLink(named name: String) throws -> Link {
        guard let link = try link(named: name) else { throw RoutingError.noSuchInterface(name) }
        return link
    }

    public func addresses(of interface: String) throws -> [LinkAddress] {
        try addresses().filter { $0.interface == interface }
    }
}
