import DualHome
import Routing

/// Work docknfv-init runs after routing is in place and before the command starts — the hook
/// point through which persisted firewall rules are re-applied.
public protocol InitHook {
    var name: String { get }
    /// Applies the hook's state. Throwing makes docknfv-init roll routing back and fail.
    func apply(config: InitConfig, log: (String) -> Void) throws
}

/// docknfv-init's start-up sequence: wait for interfaces, plan, apply, run hooks.
/// Runs in the current thread's network namespace (inside the container).
public struct InitRunner {
    public var config: InitConfig
    public var hooks: [any InitHook]
    public var log: (String) -> Void

    public init(config: InitConfig, hooks: [any InitHook] = [], log: @escaping (String) -> Void) {
        self.config = config
        self.hooks = hooks
        self.log = log
    }

    /// Brings the namespace to the configured state. On failure nothing this call applied is left.
    @discardableResult
    public func setUp(backend: any RoutingBackend, pause: (Double) -> Int32? = sleepWithoutSignals) throws -> DualHomePlan {
        let requirements = InterfaceRequirement.forConfig(config.dualHome)
        log("waiting up to \(config.waitTimeoutSeconds)s for " + requirements.map(\.name).joined(separator: " and "))
        try InterfaceWaiter.wait(for: requirements, backend: backend, timeout: config.waitTimeoutSeconds, pause: pause)

        let engine = DualHomeEngine(backend)
        let plan = try engine.plan(config.dualHome)
        let changes = try engine.apply(plan)
        log("\(config.dualHome.mode.rawValue) mode: \(plan.summary.count) objects planned, \(changes.count) changed")
        for change in changes { log("  \(change)") }
        if changes.isEmpty { log("  (everything was already in place)") }

        for hook in hooks {
            do {
                try hook.apply(config: config, log: log)
            } catch {
                let failures = engine.rollback(changes)
                for failure in failures { log("rollback failed: \(failure)") }
                throw InitError.hookFailed(hook: hook.name, cause: String(describing: error))
            }
        }
        return plan
    }
}

public enum InitError: Error, Equatable, CustomStringConvertible {
    case hookFailed(hook: String, cause: String)
    public var description: String {
        switch self {
        case .hookFailed(let hook, let cause): return "\(hook) failed: \(cause); routing changes were rolled back"
        }
    }
}
