import Routing
#if canImport(Glibc)
import Glibc
#endif

/// One change `apply` made, kept so a later failure can undo it.
public enum AppliedChange: Sendable, Equatable, CustomStringConvertible {
    case addedRoute(Route)
    case replacedRoute(Route, previous: Route)
    case addedRule(PolicyRule)
    case changedSysctl(Sysctl, previous: String, now: String)

    public var description: String {
        switch self {
        case .addedRoute(let route): return "added route \(route)"
        case .replacedRoute(let route, let previous): return "replaced route \(previous) with \(route)"
        case .addedRule(let rule): return "added rule \(rule)"
        case .changedSysctl(let key, let previous, let now): return "set \(key) = \(now) (was \(previous))"
        }
    }
}

/// A difference between the plan and the kernel.
public struct Discrepancy: Sendable, Equatable, CustomStringConvertible {
    public var object: String
    public var problem: String
    public var description: String { "\(object): \(problem)" }
}

/// Applies, checks and removes dual-home plans through a `RoutingBackend`.
public struct DualHomeEngine {
    public let operations: RoutingOperations
    public var backend: any RoutingBackend { operations.backend }

    public init(_ backend: any RoutingBackend) { operations = RoutingOperations(backend) }

    // MARK: Observing

    /// Reads an interface's addresses and the gateways of default routes via it in the main table.
    public func observe(interface name: String) throws -> ObservedInterface {
        _ = try backend.requireLink(named: name)
        let addresses = try backend.addresses(of: name).map(\.address)
        var gateways: [IPAddress] = []
        for family in IPFamily.allCases {
            let defaults = try backend.routes(family: family, table: RoutingTable.main)
                .filter { $0.destination.isDefault && $0.interface == name && $0.gateway != nil }
                .sorted { $0.effectiveMetric < $1.effectiveMetric }
            if let gateway = defaults.first?.gateway { gateways.append(gateway) }
        }
        return ObservedInterface(name: name, addresses: addresses, discoveredGateways: gateways)
    }

    /// Observes both interfaces and plans. VPN mode does not need the left interface's state.
    public func plan(_ config: DualHomeConfig) throws -> DualHomePlan {
        try config.validate()
        let right = try observe(interface: config.right.interface)
        let left = config.mode == .route ? try observe(interface: config.left.interface)
            : ObservedInterface(name: config.left.interface, addresses: [])
        return try DualHomePlanner.plan(config, left: left, right: right)
    }

    // MARK: Applying

    /// Makes the kernel hold `plan`. Idempotent: objects already in place are left alone and not
    /// reported. On any failure, every change this call made is undone in reverse order and
    /// `DualHomeError.applyFailed` names the failing step.
    @discardableResult
    public func apply(_ plan: DualHomePlan) throws -> [AppliedChange] {
        var journal: [AppliedChange] = []
        var step = ""
        do {
            for planned in plan.routes {
                step = "route \(planned.route)"
                switch try operations.ensure(planned.route, replace: planned.replace) {
                case .created: journal.append(.addedRoute(planned.route))
                case .replaced(let previous): journal.append(.replacedRoute(planned.route, previous: previous))
                case .unchanged, .changed: break
                }
            }
            for rule in plan.rules {
                step = "rule \(rule)"
                if try operations.ensure(rule) == .created { journal.append(.addedRule(rule)) }
            }
            // Container engines mount /proc/sys read-only: there the settings must already have
            // been made with `--sysctl`. Collect every one that is not, to name all the flags at once.
            var notSettable: [SysctlSetting] = []
            for setting in plan.sysctls {
                step = "sysctl \(setting)"
                do {
                    if case .changed(let previous) = try operations.ensure(setting.key, setting.value) {
                        journal.append(.changedSysctl(setting.key, previous: previous, now: setting.value))
                    }
                } catch RoutingError.sysctl(_, _, let code) where code == EROFS || code == EACCES || code == EPERM {
                    if try !isSatisfied(setting) { notSettable.append(setting) }
                }
            }
            if !notSettable.isEmpty {
                let failures = rollback(journal)
                throw DualHomeError.sysctlsNotSet(notSettable.map { "\($0.key) is \((try? backend.readSysctl($0.key)) ?? "unreadable")" },
                                                  flags: Self.sysctlFlags(for: notSettable), rollbackFailures: failures)
            }
        } catch let error as DualHomeError {
            throw error
        } catch {
            let failures = rollback(journal)
            throw DualHomeError.applyFailed(step: step, cause: String(describing: error), rollbackFailures: failures)
        }
        return journal
    }

    /// Undoes `changes` in reverse order; returns the undo steps that failed.
    public func rollback(_ changes: [AppliedChange]) -> [String] {
        var failures: [String] = []
        for change in changes.reversed() {
            do {
                switch change {
                case .addedRoute(let route): try operations.remove(route)
                case .replacedRoute(_, let previous): try backend.addRoute(previous, replace: true)
                case .addedRule(let rule): try operations.remove(rule)
                case .changedSysctl(let key, let previous, _): try backend.writeSysctl(key, value: previous)
                }
            } catch {
                failures.append("\(change): \(error)")
            }
        }
        return failures
    }

    // MARK: Checking

    /// What of `plan` the kernel does not hold. Empty = in place.
    public func check(_ plan: DualHomePlan) throws -> [Discrepancy] {
        var out: [Discrepancy] = []
        for planned in plan.routes where try !operations.check(planned.route) {
            out.append(Discrepancy(object: "route \(planned.route)", problem: "missing"))
        }
        for rule in plan.rules where try !operations.check(rule) {
            out.append(Discrepancy(object: "rule \(rule)", problem: "missing"))
        }
        for setting in plan.sysctls {
            if try isSatisfied(setting) { continue }
            let current = try backend.readSysctl(setting.key)
            out.append(Discrepancy(object: "sysctl \(setting.key)", problem: "is \(current), want \(setting.value)"))
        }
        return out
    }

    // MARK: Sysctls set by the container engine

    /// Whether the kernel already behaves as `setting` asks. Reverse-path filtering is effectively
    /// the larger of `conf.all.rp_filter` and the interface's value, and only strict mode (1) drops
    /// crossing packets: off (0) or loose (2) through either key is fine — which is what
    /// `--sysctl net.ipv4.conf.all.rp_filter=2` gives whatever the interfaces are called.
    public func isSatisfied(_ setting: SysctlSetting) throws -> Bool {
        let current = try backend.readSysctl(setting.key)
        if current == setting.value { return true }
        guard setting.key.isRPFilter, setting.value == "2" else { return false }
        let all = try backend.readSysctl(.rpFilter("all"))
        return max(Int(current) ?? 1, Int(all) ?? 1) != 1
    }

    /// The `--sysctl` flags (podman, docker) that make `settings` hold in a container.
    public static func sysctlFlags(for settings: [SysctlSetting]) -> [String] {
        var flags: [String] = []
        for setting in settings {
            let flag = setting.key.isRPFilter ? "--sysctl \(Sysctl.rpFilter("all"))=\(setting.value)" : "--sysctl \(setting.key)=\(setting.value)"
            if !flags.contains(flag) { flags.append(flag) }
        }
        return flags
    }

    // MARK: Removing

    /// Removes everything docknfv owns for `config`: routes stamped with docknfv's protocol in the
    /// two tables (and, in VPN mode, the default routes it put in main) and docknfv's rules that
    /// look them up. Works without the interfaces (they may be gone already). Sysctls are left as
    /// they are: other users of the namespace may rely on forwarding.
    @discardableResult
    public func remove(_ config: DualHomeConfig) throws -> [String] {
        var removed: [String] = []
        let tables: Set<UInt32> = config.mode == .route ? [config.left.table, config.right.table] : []
        for family in IPFamily.allCases {
            for rule in try backend.rules(family: family)
            where rule.protocol == docknfvRouteProtocol && tables.contains(rule.table) {
                if try operations.remove(rule) { removed.append("rule \(rule)") }
            }
            for route in try backend.routes(family: family, table: nil) where route.protocol == docknfvRouteProtocol {
                let ours = tables.contains(route.table)
                    || (config.mode == .vpn && route.table == RoutingTable.main && route.destination.isDefault)
                if ours, try operations.remove(route) { removed.append("route \(route)") }
            }
        }
        return removed
    }
}
