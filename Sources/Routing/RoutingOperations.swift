/// What an `ensure` call did.
public enum EnsureOutcome: Equatable, Sendable {
    /// The object was already as wanted; nothing changed.
    case unchanged
    /// The object was created.
    case created
    /// The route replaced `previous` in the same slot (only where replacing was asked for).
    case replaced(previous: Route)
    /// A sysctl changed from `previous`.
    case changed(previous: String)
}

/// Idempotent ensure / check / remove on top of a `RoutingBackend`. Every method is safe to
/// repeat: ensuring twice changes nothing the second time, removing what is absent is a no-op.
public struct RoutingOperations {
    public let backend: any RoutingBackend

    public init(_ backend: any RoutingBackend) { self.backend = backend }

    // MARK: Routes

    /// Makes sure `route` is installed. A different route in the same slot is a conflict unless
    /// `replace` is set (then the previous route is returned in the outcome, for rollback).
    @discardableResult
    public func ensure(_ route: Route, replace: Bool = false) throws -> EnsureOutcome {
        let existing = try backend.routes(family: route.family, table: route.table).first { $0.sameSlot(as: route) }
        if let existing {
            if existing.sameEffect(as: route) { return .unchanged }
            guard replace || existing.protocol == route.protocol else {
                throw RoutingError.conflict(wanted: "route \(route)", existing: "route \(existing)")
            }
            try backend.addRoute(route, replace: true)
            return .replaced(previous: existing)
        }
        do {
            try backend.addRoute(route, replace: false)
        } catch let error as RoutingError where error.netlinkCode == .exists {
            // Lost a race with another writer that installed the same slot: re-check once.
            if try check(route) { return .unchanged }
            throw error
        }
        return .created
    }

    /// True when the kernel holds `route` (same slot, same next hop).
    public func check(_ route: Route) throws -> Bool {
        try backend.routes(family: route.family, table: route.table).contains { $0.sameEffect(as: route) }
    }

    /// Removes `route` if present. Returns whether something was removed.
    @discardableResult
    public func remove(_ route: Route) throws -> Bool {
        guard let existing = try backend.routes(family: route.family, table: route.table).first(where: { $0.sameEffect(as: route) }) else {
            return false
        }
        do { try backend.deleteRoute(existing) } catch let error as RoutingError where error.netlinkCode == .objectNotFound {
            return false
        }
        return true
    }

    // MARK: Rules

    @discardableResult
    public func ensure(_ rule: PolicyRule) throws -> EnsureOutcome {
        if try check(rule) { return .unchanged }
        do {
            try backend.addRule(rule)
        } catch let error as RoutingError where error.netlinkCode == .exists {
            return .unchanged
        }
        return .created
    }

    public func check(_ rule: PolicyRule) throws -> Bool {
        try backend.rules(family: rule.family).contains { $0.sameEffect(as: rule) }
    }

    /// Removes every copy of `rule` (the kernel allows duplicates when added without NLM_F_EXCL).
    @discardableResult
    public func remove(_ rule: PolicyRule) throws -> Bool {
        var removed = false
        for existing in try backend.rules(family: rule.family) where existing.sameEffect(as: rule) {
            do { try backend.deleteRule(existing); removed = true }
            catch let error as RoutingError where error.netlinkCode == .objectNotFound || error.netlinkCode == .noAddress {}
        }
        return removed
    }

    // MARK: Addresses and links

    @discardableResult
    public func ensure(address: InterfaceAddress, on interface: String) throws -> EnsureOutcome {
        if try check(address: address, on: interface) { return .unchanged }
        do { try backend.addAddress(address, interface: interface) }
        catch let error as RoutingError where error.netlinkCode == .exists { return .unchanged }
        return .created
    }

    public func check(address: InterfaceAddress, on interface: String) throws -> Bool {
        try backend.addresses(of: interface).contains { $0.address == address }
    }

    @discardableResult
    public func remove(address: InterfaceAddress, from interface: String) throws -> Bool {
        guard try check(address: address, on: interface) else { return false }
        try backend.deleteAddress(address, interface: interface)
        return true
    }

    /// Brings a link up or down and/or sets its MTU, touching only what differs.
    @discardableResult
    public func ensureLink(_ name: String, up: Bool? = nil, mtu: UInt32? = nil) throws -> EnsureOutcome {
        let link = try backend.requireLink(named: name)
        let wantUp = up.flatMap { $0 == link.isUp ? nil : $0 }
        let wantMTU = mtu.flatMap { $0 == link.mtu ? nil : $0 }
        if wantUp == nil && wantMTU == nil { return .unchanged }
        try backend.setLink(name, up: wantUp, mtu: wantMTU)
        var previous: [String] = []
        if wantUp != nil { previous.append(link.isUp ? "up" : "down") }
        if wantMTU != nil { previous.append("mtu \(link.mtu)") }
        return .changed(previous: previous.joined(separator: ", "))
    }

    // MARK: Sysctls

    @discardableResult
    public func ensure(_ key: Sysctl, _ value: String) throws -> EnsureOutcome {
        let current = try backend.readSysctl(key)
        if current == value { return .unchanged }
        try backend.writeSysctl(key, value: value)
        return .changed(previous: current)
    }
}
