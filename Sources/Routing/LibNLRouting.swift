import CLibNL
#if canImport(Glibc)
import Glibc
#endif

/// `RoutingBackend` on libnl-route-3. The netlink socket belongs to the network namespace of
/// the thread that creates this object, so create it inside `NetworkNamespace.run`.
/// Not thread-safe: one instance per thread.
public final class LibNLRouting: RoutingBackend {
    private let socket: OpaquePointer
    /// The errno of the kernel's last error answer on this socket (0: none since last checked),
    /// recorded by the error callback: libnl's codes lose errnos it has no code for.
    private let kernelError = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    public init() throws {
        kernelError.initialize(to: 0)
        guard let socket = nl_socket_alloc() else {
            kernelError.deallocate()
            throw RoutingError.netlink(call: "nl_socket_alloc", object: "route socket", code: .init(rawValue: NLE_NOMEM))
        }
        let rc = nl_connect(socket, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(socket)
            kernelError.deallocate()
            throw RoutingError.netlink(call: "nl_connect", object: "NETLINK_ROUTE", code: NetlinkCode(rawValue: rc))
        }
        // Same outcome as libnl's default (NL_STOP: the call returns the mapped code), but the
        // kernel's errno is kept for the message.
        nl_socket_modify_err_cb(socket, NL_CB_CUSTOM, { _, error, context in
            if let error, let context { context.assumingMemoryBound(to: Int32.self).pointee = -error.pointee.error }
            return Int32(NL_STOP.rawValue)
        }, kernelError)
        self.socket = socket
    }

    deinit {
        nl_socket_free(socket)
        kernelError.deallocate()
    }

    /// Runs a libnl request and checks it as `nlCheck` does, with the kernel's errno when libnl
    /// reports only "Unspecific failure".
    private func check(_ call: String, _ object: @autoclosure () -> String, _ request: () -> Int32) throws {
        kernelError.pointee = 0
        let rc = request()
        let errno = kernelError.pointee
        if rc == -NLE_FAILURE, errno > 0 {
            throw RoutingError.netlink(call: call, object: object(), code: NetlinkCode(rawValue: rc, kernelErrno: errno))
        }
        try nlCheck(rc, call, object())
    }

    // MARK: Reading

    public func links() throws -> [Link] {
        try withCache(call: "rtnl_link_alloc_cache", object: "links", { rtnl_link_alloc_cache(socket, AF_UNSPEC, &$0) }) { object in
            let flags = rtnl_link_get_flags(object)
            return Link(name: String(cString: rtnl_link_get_name(object)), index: rtnl_link_get_ifindex(object),
                        isUp: flags & iffUp != 0,
                        hasCarrier: flags & iffLowerUp != 0,
                        mtu: rtnl_link_get_mtu(object))
        }
    }

    public func addresses() throws -> [LinkAddress] {
        try withCache(call: "rtnl_addr_alloc_cache", object: "addresses", { rtnl_addr_alloc_cache(socket, &$0) }) { object in
            guard let local = rtnl_addr_get_local(object), let address = ipAddress(local) else { return nil }
            let name = interfaceName(rtnl_addr_get_ifindex(object))
            return LinkAddress(interface: name,
                               address: InterfaceAddress(address: address, prefixLength: Int(rtnl_addr_get_prefixlen(object))),
                               scope: RouteScope(rawValue: UInt8(truncatingIfNeeded: rtnl_addr_get_scope(object))) ?? .universe,
                               isTentative: UInt32(rtnl_addr_get_flags(object)) & UInt32(IFA_F_TENTATIVE) != 0)
        }
    }

    public func routes(family: IPFamily, table: UInt32?) throws -> [Route] {
        try withCache(call: "rtnl_route_alloc_cache", object: "\(family) routes",
                      { rtnl_route_alloc_cache(socket, family.addressFamily, 0, &$0) }) { object in
            // The kernel may answer a family-filtered dump with other families' objects too.
            guard Int32(rtnl_route_get_family(object)) == family.addressFamily,
                  rtnl_route_get_type(object) == UInt8(RTN_UNICAST) else { return nil }
            let routeTable = rtnl_route_get_table(object)
            if let table, routeTable != table { return nil }
            let destination: IPPrefix
            if let dst = rtnl_route_get_dst(object), let prefix = ipPrefix(dst) {
                destination = prefix
            } else {
                destination = .default(family)
            }
            var gateway: IPAddress?
            var interface: String?
            if rtnl_route_get_nnexthops(object) > 0, let hop = rtnl_route_nexthop_n(object, 0) {
                if let gw = rtnl_route_nh_get_gateway(hop) { gateway = ipAddress(gw) }
                let index = rtnl_route_nh_get_ifindex(hop)
                if index > 0 { interface = interfaceName(index) }
            }
            return Route(table: routeTable, destination: destination, gateway: gateway, interface: interface,
                         metric: rtnl_route_get_priority(object),
                         scope: RouteScope(rawValue: rtnl_route_get_scope(object)) ?? .universe,
                         protocol: rtnl_route_get_protocol(object))
        }
    }

    public func rules(family: IPFamily) throws -> [PolicyRule] {
        try withCache(call: "rtnl_rule_alloc_cache", object: "\(family) rules",
                      { rtnl_rule_alloc_cache(socket, family.addressFamily, &$0) }) { object in
            guard rtnl_rule_get_family(object) == family.addressFamily,
                  rtnl_rule_get_action(object) == UInt8(FR_ACT_TO_TBL) else { return nil }
            var proto: UInt8 = 0
            _ = rtnl_rule_get_protocol(object, &proto)
            let mark = rtnl_rule_get_mark(object)
            let mask = rtnl_rule_get_mask(object)
            return PolicyRule(family: family, priority: rtnl_rule_get_prio(object), table: rtnl_rule_get_table(object),
                              inputInterface: rtnl_rule_get_iif(object).map { String(cString: $0) },
                              outputInterface: rtnl_rule_get_oif(object).map { String(cString: $0) },
                              from: rtnl_rule_get_src(object).flatMap(ipPrefix),
                              to: rtnl_rule_get_dst(object).flatMap(ipPrefix),
                              fwmark: mark == 0 ? nil : mark,
                              fwmask: mark == 0 ? nil : mask,
                              protocol: proto)
        }
    }

    // MARK: Links and addresses

    public func setLink(_ name: String, up: Bool?, mtu: UInt32?) throws {
        var current: OpaquePointer?
        let rc = rtnl_link_get_kernel(socket, 0, name, &current)
        if rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV { throw RoutingError.noSuchInterface(name) }
        try nlCheck(rc, "rtnl_link_get_kernel", "link \(name)")
        defer { rtnl_link_put(current) }
        guard let changes = rtnl_link_alloc() else { throw RoutingError.invalid("out of memory") }
        defer { rtnl_link_put(changes) }
        if let up {
            if up { rtnl_link_set_flags(changes, iffUp) }
            else { rtnl_link_unset_flags(changes, iffUp) }
        }
        if let mtu { rtnl_link_set_mtu(changes, mtu) }
        try check("rtnl_link_change", "link \(name)") { rtnl_link_change(socket, current, changes, 0) }
    }

    public func addAddress(_ address: InterfaceAddress, interface: String) throws {
        try withAddress(address, interface: interface) { object in
            try check("rtnl_addr_add", "address \(address) dev \(interface)") { rtnl_addr_add(socket, object, NLM_F_EXCL) }
        }
    }

    public func deleteAddress(_ address: InterfaceAddress, interface: String) throws {
        try withAddress(address, interface: interface) { object in
            try check("rtnl_addr_delete", "address \(address) dev \(interface)") { rtnl_addr_delete(socket, object, 0) }
        }
    }

    // MARK: Routes and rules

    public func addRoute(_ route: Route, replace: Bool) throws {
        try withRoute(route) { object in
            try check("rtnl_route_add", "route \(route)") { rtnl_route_add(socket, object, replace ? NLM_F_REPLACE : NLM_F_EXCL) }
        }
    }

    public func deleteRoute(_ route: Route) throws {
        try withRoute(route) { object in
            try check("rtnl_route_delete", "route \(route)") { rtnl_route_delete(socket, object, 0) }
        }
    }

    public func addRule(_ rule: PolicyRule) throws {
        try withRule(rule) { object in
            try check("rtnl_rule_add", rule.description) { rtnl_rule_add(socket, object, NLM_F_EXCL) }
        }
    }

    public func deleteRule(_ rule: PolicyRule) throws {
        try withRule(rule) { object in
            try check("rtnl_rule_delete", rule.description) { rtnl_rule_delete(socket, object, 0) }
        }
    }

    // MARK: Sysctls

    public func readSysctl(_ key: Sysctl) throws -> String { try key.read() }
    public func writeSysctl(_ key: Sysctl, value: String) throws { try key.write(value) }

    // MARK: - Building libnl objects

    private func withRoute(_ route: Route, _ body: (OpaquePointer) throws -> Void) throws {
        guard let object = rtnl_route_alloc() else { throw RoutingError.invalid("out of memory") }
        defer { rtnl_route_put(object) }
        _ = rtnl_route_set_family(object, UInt8(route.family.addressFamily))
        rtnl_route_set_table(object, route.table)
        rtnl_route_set_scope(object, route.scope.rawValue)
        rtnl_route_set_protocol(object, route.protocol)
        _ = rtnl_route_set_type(object, UInt8(RTN_UNICAST))
        if let metric = route.metric { rtnl_route_set_priority(object, metric) }
        let dst = try nlAddress(route.destination.network.address, prefixLength: route.destination.length)
        defer { nl_addr_put(dst) }
        try nlCheck(rtnl_route_set_dst(object, dst), "rtnl_route_set_dst", "route \(route)")
        if route.gateway != nil || route.interface != nil {
            guard let hop = rtnl_route_nh_alloc() else { throw RoutingError.invalid("out of memory") }
            if let name = route.interface {
                let index = if_nametoindex(name)
                guard index > 0 else {
                    rtnl_route_nh_free(hop)
                    throw RoutingError.noSuchInterface(name)
                }
                rtnl_route_nh_set_ifindex(hop, Int32(index))
            }
            if let gateway = route.gateway {
                let gw = try nlAddress(gateway, prefixLength: nil)
                rtnl_route_nh_set_gateway(hop, gw)
                nl_addr_put(gw)
            }
            rtnl_route_add_nexthop(object, hop) // the route owns the hop from here on
        }
        try body(object)
    }

    private func withRule(_ rule: PolicyRule, _ body: (OpaquePointer) throws -> Void) throws {
        guard let object = rtnl_rule_alloc() else { throw RoutingError.invalid("out of memory") }
        defer { rtnl_rule_put(object) }
        rtnl_rule_set_family(object, rule.family.addressFamily)
        rtnl_rule_set_prio(object, rule.priority)
        rtnl_rule_set_table(object, rule.table)
        rtnl_rule_set_action(object, UInt8(FR_ACT_TO_TBL))
        _ = rtnl_rule_set_protocol(object, rule.protocol)
        if let name = rule.inputInterface { try nlCheck(rtnl_rule_set_iif(object, name), "rtnl_rule_set_iif", rule.description) }
        if let name = rule.outputInterface { try nlCheck(rtnl_rule_set_oif(object, name), "rtnl_rule_set_oif", rule.description) }
        if let from = rule.from {
            let addr = try nlAddress(from.network.address, prefixLength: from.length)
            defer { nl_addr_put(addr) }
            try nlCheck(rtnl_rule_set_src(object, addr), "rtnl_rule_set_src", rule.description)
        }
        if let to = rule.to {
            let addr = try nlAddress(to.network.address, prefixLength: to.length)
            defer { nl_addr_put(addr) }
            try nlCheck(rtnl_rule_set_dst(object, addr), "rtnl_rule_set_dst", rule.description)
        }
        if let mark = rule.fwmark {
            rtnl_rule_set_mark(object, mark)
            rtnl_rule_set_mask(object, rule.fwmask ?? 0xffff_ffff)
        }
        try body(object)
    }

    private func withAddress(_ address: InterfaceAddress, interface: String, _ body: (OpaquePointer) throws -> Void) throws {
        let index = if_nametoindex(interface)
        guard index > 0 else { throw RoutingError.noSuchInterface(interface) }
        guard let object = rtnl_addr_alloc() else { throw RoutingError.invalid("out of memory") }
        defer { rtnl_addr_put(object) }
        rtnl_addr_set_ifindex(object, Int32(index))
        let local = try nlAddress(address.address, prefixLength: address.prefixLength)
        defer { nl_addr_put(local) }
        try nlCheck(rtnl_addr_set_local(object, local), "rtnl_addr_set_local", "address \(address) dev \(interface)")
        try body(object)
    }

    // MARK: - Conversions

    /// Allocates a libnl cache, maps each object, frees the cache.
    private func withCache<T>(call: String, object: String, _ allocate: (inout OpaquePointer?) -> Int32,
                              _ transform: (OpaquePointer) throws -> T?) throws -> [T] {
        var cache: OpaquePointer?
        try nlCheck(allocate(&cache), call, object)
        defer { nl_cache_free(cache) }
        var out: [T] = []
        var item = nl_cache_get_first(cache)
        while let current = item {
            if let value = try transform(current) { out.append(value) }
            item = nl_cache_get_next(current)
        }
        return out
    }

    private func interfaceName(_ index: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard index > 0, if_indextoname(UInt32(index), &buffer) != nil else { return "if\(index)" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

// <linux/if.h> flag values (glibc's <net/if.h> lacks IFF_LOWER_UP and the two headers clash).
private let iffUp: UInt32 = 0x1
private let iffLowerUp: UInt32 = 0x1_0000

/// Builds an `nl_addr` (caller puts it). A nil prefix length means a host address.
func nlAddress(_ address: IPAddress, prefixLength: Int?) throws -> OpaquePointer {
    let built = address.bytes.withUnsafeBytes { raw in
        nl_addr_build(address.family.addressFamily, raw.baseAddress, raw.count)
    }
    guard let built else { throw RoutingError.invalid("out of memory building \(address)") }
    nl_addr_set_prefixlen(built, Int32(prefixLength ?? address.family.bitCount))
    return built
}

func ipAddress(_ address: OpaquePointer) -> IPAddress? {
    guard let family = IPFamily(addressFamily: nl_addr_get_family(address)),
          let raw = nl_addr_get_binary_addr(address) else { return nil }
    let length = Int(nl_addr_get_len(address))
    guard length == family.byteCount else { return nil }
    let bytes = Array(UnsafeRawBufferPointer(start: raw, count: length))
    return IPAddress(family: family, bytes: bytes)
}

func ipPrefix(_ address: OpaquePointer) -> IPPrefix? {
    guard let ip = ipAddress(address) else { return nil }
    return IPPrefix(address: ip, length: Int(nl_addr_get_prefixlen(address)))
}
