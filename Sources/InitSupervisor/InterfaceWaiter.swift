import DualHome
import Routing
#if canImport(Glibc)
import Glibc
#endif

/// What docknfv-init waits for before planning.
public struct InterfaceRequirement: Sendable, Equatable {
    public var name: String
    /// Up (IFF_UP) and holding an IPv4 or a non-tentative global IPv6 address.
    public var needsAddress: Bool

    public init(name: String, needsAddress: Bool) {
        self.name = name
        self.needsAddress = needsAddress
    }

    /// Route mode needs both sides ready; VPN mode only the right (the left gets its address
    /// from DHCP, typically started by the supervised command itself).
    public static func forConfig(_ config: DualHomeConfig) -> [InterfaceRequirement] {
        switch config.mode {
        case .route:
            return [.init(name: config.left.interface, needsAddress: true), .init(name: config.right.interface, needsAddress: true)]
        case .vpn:
            return [.init(name: config.left.interface, needsAddress: false), .init(name: config.right.interface, needsAddress: true)]
        }
    }
}

public enum WaitError: Error, Equatable, CustomStringConvertible {
    case timedOut(seconds: Double, missing: [String])
    case interrupted(signal: Int32)

    public var description: String {
        switch self {
        case .timedOut(let seconds, let missing):
            return "interfaces not ready after \(seconds)s: " + missing.joined(separator: "; ")
        case .interrupted(let signal):
            return "interrupted by signal \(signal) while waiting for interfaces"
        }
    }
}

public enum InterfaceWaiter {
    /// What is still missing, one phrase per problem (empty = ready).
    public static func missing(_ requirements: [InterfaceRequirement], backend: any RoutingBackend) throws -> [String] {
        let links = try backend.links()
        let addresses = try backend.addresses()
        var problems: [String] = []
        for requirement in requirements {
            guard let link = links.first(where: { $0.name == requirement.name }) else {
                problems.append("\(requirement.name) does not exist")
                continue
            }
            guard requirement.needsAddress else { continue }
            if !link.isUp { problems.append("\(requirement.name) is down") }
            let usable = addresses.contains {
                $0.interface == requirement.name && !$0.address.address.isIPv6LinkLocal && !$0.isTentative
            }
            if !usable { problems.append("\(requirement.name) has no IPv4 or global IPv6 address") }
        }
        return problems
    }

    /// Polls until every requirement holds or `timeout` passes. `pause` sleeps between polls and
    /// may return a signal number to abort (docknfv-init passes a signal-aware sleep).
    public static func wait(for requirements: [InterfaceRequirement], backend: any RoutingBackend, timeout: Double,
                            interval: Double = 0.1, pause: (Double) -> Int32? = sleepWithoutSignals) throws {
        let start = ContinuousClock.now
        let limit = Duration.milliseconds(Int64(timeout * 1000))
        while true {
            let problems = try missing(requirements, backend: backend)
            if problems.isEmpty { return }
            if ContinuousClock.now - start >= limit { throw WaitError.timedOut(seconds: timeout, missing: problems) }
            if let signal = pause(interval) { throw WaitError.interrupted(signal: signal) }
        }
    }
}

/// The default pause between polls: a plain sleep that never reports a signal.
public func sleepWithoutSignals(_ seconds: Double) -> Int32? {
    usleep(UInt32(seconds * 1_000_000))
    return nil
}
