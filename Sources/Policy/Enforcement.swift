import RuleEngine
import StateFiles

/// A container on this node, from the CNI plugin's records.
public struct LocalContainer: Sendable, Hashable {
    public var address: IPAddress
    public var groupID: String?
    public init(address: IPAddress, groupID: String?) { self.address = address; self.groupID = groupID }
}

/// What happens to overlay traffic no policy allows.
public enum DenyAction: String, Sendable, CaseIterable {
    case reject, drop
    /// Let it through, logging it (a dry run before enforcing).
    case log
}

/// Policies + the node's containers → the agent's ruleset, as silk enforces it:
/// - mangle PREROUTING marks what a local source container sends into the overlay with its
///   group's tag (VXLAN group-based policy carries the mark to other nodes);
/// - filter FORWARD sends overlay traffic for each local destination container through that
///   container's chain `C2C-<address>`, which accepts replies, accepts the tags and ports its
///   group's policies allow, and rejects (or drops, or logs and accepts) the rest.
public enum EnforcementPlanner {
    public static let owner = try! Owner("agent") // swiftlint:disable:this force_try

    public static func plan(_ policies: [Policy], containers: [LocalContainer], overlay: IPPrefix, deny: DenyAction = .reject) throws -> Ruleset {
        var builder = RulesetBuilder(owner: owner)
        let family = overlay.family
        let local = containers.filter { $0.address.family == family && overlay.contains($0.address) }.sorted { $0.address < $1.address }
        // Each group's tag, as the policies name it (a group is a source in some policy to be marked).
        var tags: [String: UInt32] = [:]
        for policy in policies { tags[policy.sourceID] = policy.sourceTag }
        for container in local {
            guard let group = container.groupID, let tag = tags[group] else { continue }
            try builder.append(family, .mangle, "PREROUTING", "-s \(container.address) -d \(overlay) -j MARK --set-xmark 0x\(String(tag, radix: 16))/0xffffffff")
        }
        var byDestination: [String: [Policy]] = [:]
        for policy in policies { byDestination[policy.destinationID, default: []].append(policy) }
        for container in local {
            let chain = chainName(container.address)
            builder.chain(family, .filter, chain)
            try builder.append(family, .filter, "FORWARD", "-s \(overlay) -d \(container.address) -j \(chain)")
            try builder.append(family, .filter, chain, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
            var seen = Set<Rule>()
            for policy in (container.groupID.flatMap { byDestination[$0] } ?? []).sorted(by: order) {
                // Built as values, not parsed from text: a poll may carry tens of thousands.
                let rule = allowRule(policy, family: family)
                if seen.insert(rule).inserted { builder.append(family, .filter, chain, rule) }
            }
            switch deny {
            case .reject: try builder.append(family, .filter, chain, "-j REJECT --reject-with \(family == .v4 ? "icmp-port-unreachable" : "icmp6-port-unreachable")")
            case .drop: try builder.append(family, .filter, chain, "-j DROP")
            case .log:
                try builder.append(family, .filter, chain, "-m limit --limit 2/sec --limit-burst 2 -j LOG --log-prefix \"DENY_C2C \"")
                try builder.append(family, .filter, chain, "-j ACCEPT")
            }
        }
        return builder.ruleset
    }

    /// `-p PROTO -m mark --mark 0xTAG -m PROTO --dport PORTS -j ACCEPT`.
    static func allowRule(_ policy: Policy, family: IPFamily) -> Rule {
        let ports = Negatable(PortRange(policy.ports.lowerBound, policy.ports.upperBound))
        let portMatch: Match = policy.proto == .tcp ? .tcp(TCPMatch(destinationPorts: ports)) : .udp(UDPMatch(destinationPorts: ports))
        return Rule(family: family, proto: Negatable(policy.proto == .tcp ? 6 : 17), matches: [.mark(MarkMatch(value: policy.sourceTag)), portMatch], target: .accept)
    }

    /// `C2C-` and the address in hex: stable, so a changed policy rewrites only its chain.
    static func chainName(_ address: IPAddress) -> String {
        "C2C-" + address.bytes.suffix(address.family == .v4 ? 4 : 6).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// A stable order, so the same policies in another order plan the same rules.
    static func order(_ a: Policy, _ b: Policy) -> Bool {
        (a.sourceTag, a.proto.rawValue, a.ports.lowerBound, a.ports.upperBound) < (b.sourceTag, b.proto.rawValue, b.ports.lowerBound, b.ports.upperBound)
    }
}

/// The agent's settings a CNI ADD needs to apply the known policies to a new container at once
/// (`<stateDir>/agent/enforcement.json`, beside the last good `policies.json`).
public struct AgentEnforcement: Sendable, Equatable {
    public static let fileName = "enforcement.json"
    public var overlay: IPPrefix
    public var deny: DenyAction
    public var backend: BackendKind

    public init(overlay: IPPrefix, deny: DenyAction, backend: BackendKind) { self.overlay = overlay; self.deny = deny; self.backend = backend }

    public func json() -> JSON {
        .object([("overlayNetwork", .string(overlay.description)), ("denyAction", .string(deny.rawValue)), ("backend", .string(backend.rawValue))])
    }

    public init?(json: JSON) {
        guard let overlay = json["overlayNetwork"]?.string.flatMap({ IPPrefix($0) }), let deny = json["denyAction"]?.string.flatMap(DenyAction.init(rawValue:)),
              let backend = json["backend"]?.string.flatMap(BackendKind.init(rawValue:)) else { return nil }
        self.init(overlay: overlay, deny: deny, backend: backend)
    }
}
