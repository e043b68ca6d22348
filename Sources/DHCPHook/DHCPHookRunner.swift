import DHCPRoutes
import Routing
import StateFiles

/// Settings of docknfv-dhcp-hook (command-line options and `DOCKNFV_*` variables).
public struct HookOptions: Sendable, Equatable {
    public var pushFile: String
    /// How to tell OpenVPN; nil = only write the file.
    public var control: OpenVPNControl?
    /// Push a DHCP default route as `redirect-gateway def1`.
    public var redirectGateway: Bool
    /// Install the routes in the container's main table through the DHCP interface.
    public var installRoutes: Bool

    public static let defaultPushFile = "/etc/openvpn/docknfv-routes.conf"

    public init(pushFile: String = defaultPushFile, control: OpenVPNControl? = nil, redirectGateway: Bool = false,
                installRoutes: Bool = true) {
        self.pushFile = pushFile
        self.control = control
        self.redirectGateway = redirectGateway
        self.installRoutes = installRoutes
    }
}

public enum HookError: Error, Equatable, CustomStringConvertible {
    case missingVariable(String)
    case unknownReason(String)
    case invalidInterface(String)
    case lease(LeaseError)
    case routes(step: String, cause: String)
    case pushFile(String)

    public var description: String {
        switch self {
        case .missingVariable(let name): return "dhclient variable \(name) is not set"
        case .unknownReason(let reason): return "unknown dhclient reason \"\(reason)\""
        case .invalidInterface(let name): return "interface \"\(name)\" is not a valid interface name"
        case .lease(let error): return "\(error); nothing was changed"
        case .routes(let step, let cause): return "installing routes failed at \(step): \(cause); routes and push file left as they were"
        case .pushFile(let cause): return "writing the push file failed: \(cause); routes rolled back, file left as it was"
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

/// One dhclient event: decide, install routes (rolled back on failure), write the include file
/// atomically, and tell OpenVPN only when the file's content changed.
public struct DHCPHookRunner {
    public var options: HookOptions
    public var log: (String) -> Void

    public init(options: HookOptions, log: @escaping (String) -> Void) {
        self.options = options
        self.log = log
    }

    public func run(environment env: [String: String], backend: @autoclosure () throws -> any RoutingBackend) throws -> HookOutcome {
        guard let reason = env["reason"] else { throw HookError.missingVariable("reason") }
        guard let action = DHCPReason.action(for: reason) else { throw HookError.unknownReason(reason) }
        var outcome = HookOutcome(action: action)
        if action == .ignore { return outcome }
        guard let interface = env["interface"], !interface.isEmpty else { throw HookError.missingVariable("interface") }
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

        var journal: [(undo: () throws -> Void, what: String)] = []
        let engine: RoutingOperations? = options.installRoutes ? RoutingOperations(try backend()) : nil
        if let engine {
            do {
                try syncRoutes(routes, interface: interface, engine: engine, journal: &journal, outcome: &outcome)
            } catch let error as HookError {
                undo(journal)
                throw error
            }
        }

        let previous: String?
        do { previous = try AtomicFile.readString(options.pushFile) } catch {
            undo(journal)
            throw HookError.pushFile(String(describing: error))
        }
        if previous != content {
            do { try AtomicFile.write(options.pushFile, string: content) } catch {
                undo(journal)
                throw HookError.pushFile(String(describing: error))
            }
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
    /// the routes docknfv owns there.
    func syncRoutes(_ routes: [ClasslessRoute], interface: String, engine: RoutingOperations,
                    journal: inout [(undo: () throws -> Void, what: String)], outcome: inout HookOutcome) throws {
        let desired = routes.filter { !$0.destination.isDefault }.map { route in
            Route(table: RoutingTable.main, destination: route.destination, gateway: route.gateway, interface: interface)
        }
        if routes.contains(where: { $0.destination.isDefault }) {
            log("not installing the DHCP default route: the container's default route belongs to the right side")
        }
        var step = ""
        do {
            for route in desired {
                step = "route \(route)"
                if try engine.ensure(route) == .created {
                    journal.append((undo: { try engine.remove(route) }, what: "added \(route)"))
                    outcome.routesAdded.append(route.description)
                    log("installed route \(route)")
                }
            }
            let owned = try engine.backend.routes(family: .v4, table: RoutingTable.main).filter {
                $0.protocol == docknfvRouteProtocol && $0.interface == interface && !$0.destination.isDefault
            }
            for route in owned where !desired.contains(where: { $0.sameEffect(as: route) }) {
                step = "removing route \(route)"
                try engine.backend.deleteRoute(route)
                journal.append((undo: { try engine.backend.addRoute(route, replace: false) }, what: "removed \(route)"))
                outcome.routesRemoved.append(route.description)
                log("removed route \(route)")
            }
        } catch {
            throw HookError.routes(step: step, cause: String(describing: error))
        }
    }

    func undo(_ journal: [(undo: () throws -> Void, what: String)]) {
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
