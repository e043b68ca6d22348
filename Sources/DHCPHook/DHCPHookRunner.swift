import DHCPRoutes
import Routing
import StateFiles

public enum HookError: Error, Equatable, CustomStringConvertible {
    case missingVariable(String)
    case unknownReason(String)
    case invalidInterface(String)
    case lease(LeaseError)
    case routes(step: String, cause: String)
    case pushFile(String)
    case invalidSetting(name: String, value: String, reason: String)
    /// A termination signal arrived before the push file was replaced: routes were rolled back.
    case interrupted(signal: Int32)

    public var description: String {
        switch self {
        case .missingVariable(let name): return "dhclient variable \(name) is not set"
        case .unknownReason(let reason): return "unknown dhclient reason \"\(reason)\""
        case .invalidInterface(let name): return "interface \"\(name)\" is not a valid interface name"
        case .lease(let error): return "\(error); nothing was changed"
        case .routes(let step, let cause): return "installing routes failed at \(step): \(cause); routes and push file left as they were"
        case .pushFile(let cause): return "writing the push file failed: \(cause); routes rolled back, file left as it was"
        case .invalidSetting(let name, let value, let reason):
            return value.isEmpty ? "\(name) \(reason)" : "\(name) = \"\(value)\": \(reason)"
        case .interrupted(let signal):
            return "stopped by \(TerminationSignals.name(signal)) before the push file was replaced; routes rolled back, push file left as it was"
        }
    }
}

/// What one run did.
public struct HookOutcome: Sendable, Equatable {
    public var action: HookAction
    public var routesAdded: [String] = []
    public var routesRemoved: [String] = []
    public var fileChanged = false
    public var notified = false
}

/// The variables of dhclient's environment the hook reads.
public enum DHClientVariable {
    public static let reason = "reason"
    public static let interface = "interface"
    /// All of them: the reason, the interface and the lease's classless routes.
    public static var all: [String] { [reason, interface] + LeaseRoutes.variables().map(\.name) }
}

/// One dhclient event: decide, install routes (rolled back on failure), write the include file
/// atomically, and tell OpenVPN only when the file's content changed.
public struct DHCPHookRunner {
    public var options: HookOptions
    public var log: (String) -> Void
    /// Polled between steps until the push file is replaced: a signal number stops the run and
    /// rolls back (the executable passes `TerminationSignals.take`).
    public var interrupted: () -> Int32?

    public init(options: HookOptions, log: @escaping (String) -> Void, interrupted: @escaping () -> Int32? = { nil }) {
        self.options = options
        self.log = log
        self.interrupted = interrupted
    }

    typealias Journal = [(undo: () throws -> Void, what: String)]

    func checkInterrupted() throws(HookError) {
        if let signal = interrupted() { throw .interrupted(signal: signal) }
    }

    public func run(environment env: [String: String], backend: @autoclosure () throws -> any RoutingBackend) throws -> HookOutcome {
        guard let reason = env[DHClientVariable.reason] else { throw HookError.missingVariable(DHClientVariable.reason) }
        guard let action = DHCPReason.action(for: reason) else { throw HookError.unknownReason(reason) }
        var outcome = HookOutcome(action: action)
        if action == .ignore { return outcome }
        guard let interface = env[DHClientVariable.interface], !interface.isEmpty else { throw HookError.missingVariable(DHClientVariable.interface) }
        guard interface.utf8.count <= 15, !interface.contains("/"), !interface.contains(" ") else {
            throw HookError.invalidInterface(interface)
        }

        // Decide everything before touching anything: a bad lease changes nothing.
        let routes: [ClasslessRoute]
        let content: String
        if action == .publish {
            let lease: LeaseRoutes
            do { lease = try LeaseRoutes.from(environment: env) } catch { throw HookError.lease(error) }
            lease.warnings.forEach { log("warning: \($0)") }
            routes = lease.routes
            content = OpenVPNPushConfig.render(routes: routes, redirectGateway: options.redirectGateway,
                                               interface: interface, source: lease.source)
            log("\(reason) on \(interface): \(routes.count) route(s) from \(lease.source.rawValue)"
                + (routes.isEmpty ? "" : ": " + routes.map(\.description).joined(separator: ", ")))
        } else {
            routes = []
            content = OpenVPNPushConfig.empty(interface: interface, reason: reason)
            log("\(reason) on \(interface): withdrawing pushed routes")
        }

        var journal: Journal = []
        let backend = options.installRoutes ? try backend() : nil
        let previous: String?
        do {
            if let backend { try syncRoutes(routes, interface: interface, backend: backend, journal: &journal, outcome: &outcome) }
            do { previous = try AtomicFile.readString(options.pushFile) } catch { throw HookError.pushFile(String(describing: error)) }
            if previous != content {
                try checkInterrupted()
                do { try AtomicFile.write(options.pushFile, string: content) } catch { throw HookError.pushFile(String(describing: error)) }
            }
        } catch let error as HookError {
            undo(journal)
            throw error
        }
        // From here on the run is complete: a signal arriving now lets it finish.
        if previous != content {
            outcome.fileChanged = true
            logDiff(old: previous, new: content)
            if let control = options.control {
                do {
                    try OpenVPNNotifier.reload(control)
                    outcome.notified = true
                    log("told OpenVPN to reload (\(control))")
                } catch {
                    // OpenVPN may simply not run yet (dhclient binds before it starts); it reads the
                    // file when it does. Not a reason to undo a correct file.
                    log("warning: \(error)")
                }
            }
        } else {
            log("\(options.pushFile) unchanged; OpenVPN not disturbed")
        }
        return outcome
    }

    /// Makes the main table hold exactly `routes` (but the default route) via `interface`, among
    /// the routes docknfv owns there. The table is listed once and indexed by slot, so N routes
    /// cost N kernel writes and no per-route dump.
    func syncRoutes(_ routes: [ClasslessRoute], interface: String, backend: any RoutingBackend,
                    journal: inout Journal, outcome: inout HookOutcome) throws(HookError) {
        let desired = routes.filter { !$0.destination.isDefault }.map { route in
            Route(table: RoutingTable.main, destination: route.destination, gateway: route.gateway, interface: interface)
        }
        if routes.contains(where: { $0.destination.isDefault }) {
            log("not installing the DHCP default route: the container's default route belongs to the right side")
        }
        var step = "listing the main table"
        do {
            let existing = try backend.routes(family: .v4, table: RoutingTable.main)
            var bySlot: [Slot: Route] = [:]
            for route in existing { bySlot[Slot(route)] = bySlot[Slot(route)] ?? route }
            for route in desired {
                step = "route \(route)"
                let current = bySlot[Slot(route)]
                if current?.sameEffect(as: route) == true { continue }
                try checkInterrupted()
                if let current {
                    // Same rule as RoutingOperations.ensure: only docknfv's own route may be replaced.
                    guard current.protocol == route.protocol else {
                        throw RoutingError.conflict(wanted: "route \(route)", existing: "route \(current)")
                    }
                    try backend.addRoute(route, replace: true)
                    journal.append((undo: { try backend.addRoute(current, replace: true) }, what: "replaced \(current)"))
                    outcome.routesAdded.append(route.description)
                    log("replaced route \(current) with \(route)")
                } else {
                    try backend.addRoute(route, replace: false)
                    journal.append((undo: { try backend.deleteRoute(route) }, what: "added \(route)"))
                    outcome.routesAdded.append(route.description)
                    log("installed route \(route)")
                }
            }
            let wanted = Set(desired.map(Slot.init))
            let stale = existing.filter {
                $0.protocol == docknfvRouteProtocol && $0.interface == interface && !$0.destination.isDefault && !wanted.contains(Slot($0))
            }
            for route in stale {
                step = "removing route \(route)"
                try checkInterrupted()
                try backend.deleteRoute(route)
                journal.append((undo: { try backend.addRoute(route, replace: false) }, what: "removed \(route)"))
                outcome.routesRemoved.append(route.description)
                log("removed route \(route)")
            }
        } catch let error as HookError {
            throw error
        } catch {
            throw .routes(step: step, cause: String(describing: error))
        }
    }

    /// A route's slot in the main table (see `Route.sameSlot`).
    struct Slot: Hashable {
        var destination: IPPrefix
        var metric: UInt32
        init(_ route: Route) {
            destination = route.destination.network
            metric = route.effectiveMetric
        }
    }

    func undo(_ journal: Journal) {
        for entry in journal.reversed() {
            do { try entry.undo() } catch { log("rollback of \(entry.what) failed: \(error)") }
        }
    }

    func logDiff(old: String?, new: String) {
        let oldLines = Set((old ?? "").split(separator: "\n").filter { $0.hasPrefix("push") })
        let newLines = Set(new.split(separator: "\n").filter { $0.hasPrefix("push") })
        for line in newLines.subtracting(oldLines).sorted() { log("push file: + \(line)") }
        for line in oldLines.subtracting(newLines).sorted() { log("push file: - \(line)") }
        log("wrote \(options.pushFile)")
    }
}
