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

/// How a destination's chain holds what its policies allow.
public enum EnforcementStyle: Sendable {
    /// One rule per allowed (tag, protocol, ports): silk's layout, for any backend.
    case rules
    /// One rule per (protocol, ports), matching a set of (address, tag) pairs (`hash:ip,mark`):
    /// a policy added or removed on a port range already in use is one set element, and
    /// thousands of policies are thousands of elements instead of thousands of rules.
    case sets

    /// Sets where the backend always has them (nftables); rules with x_tables, where the
    /// `hash:ip,mark` ipset type is a kernel option some kernels lack.
    public static func `for`(_ backend: BackendKind) -> EnforcementStyle { backend == .nftables ? .sets : .rules }
}

/// Policies + the node's containers → the agent's ruleset, as silk enforces it:
/// - mangle PREROUTING marks what a local source container sends into the overlay with its
///   group's tag (VXLAN group-based policy carries the mark to other nodes);
/// - filter FORWARD sends overlay traffic for each local destination container through that
///   container's chain `C2C-<address>`, which accepts replies, accepts the tags and ports its
///   group's policies allow, and rejects (or drops, or logs and accepts) the rest.
/// Rules are built as values, not parsed from text: a poll may carry tens of thousands.
public enum EnforcementPlanner {
    public static let owner = try! Owner("agent") // swiftlint:disable:this force_try

    public static func plan(_ policies: [Policy], containers: [LocalContainer], overlay: IPPrefix, deny: DenyAction = .reject,
                            style: EnforcementStyle = .rules) throws -> Ruleset {
        var builder = RulesetBuilder(owner: owner)
        let family = overlay.family
        let local = containers.filter { $0.address.family == family && overlay.contains($0.address) }.sorted { $0.address < $1.address }
        // Each group's tag, as the policies name it (a group is a source in some policy to be marked).
        var tags: [String: UInt32] = [:]
        for policy in policies { tags[policy.sourceID] = policy.sourceTag }
        for container in local {
            guard let group = container.groupID, let tag = tags[group] else { continue }
            builder.append(family, .mangle, "PREROUTING", Rule(family: family, source: Negatable(host(container.address)), destination: Negatable(overlay),
                                                               target: .mark(value: tag, mask: 0xffff_ffff)))
        }
        var byDestination: [String: [Policy]] = [:]
        for policy in policies { byDestination[policy.destinationID, default: []].append(policy) }
        // The same few rules in every chain: parsed once.
        let established = try parse("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", family)
        let denied = try denyTexts(deny, family: family).flatMap { try parse($0, family) }
        for container in local {
            let chain = chainName(container.address)
            builder.chain(family, .filter, chain)
            builder.append(family, .filter, "FORWARD", Rule(family: family, source: Negatable(overlay), destination: Negatable(host(container.address)), target: .jump(chain)))
            for rule in established { builder.append(family, .filter, chain, rule) }
            let allowed = (container.groupID.flatMap { byDestination[$0] } ?? []).sorted(by: order)
            switch style {
            case .rules:
                var seen = Set<Rule>()
                for policy in allowed {
                    let rule = allowRule(policy, family: family)
                    if seen.insert(rule).inserted { builder.append(family, .filter, chain, rule) }
                }
            case .sets:
                // One set per (protocol, ports), in the order of the first policy naming it.
                struct Service: Hashable, Comparable {
                    var proto: String, first: UInt16, last: UInt16
                    static func < (a: Service, b: Service) -> Bool { (a.proto, a.first, a.last) < (b.proto, b.first, b.last) }
                }
                var sets: [Service: (Policy, [SetEntry])] = [:]
                for policy in allowed {
                    let service = Service(proto: policy.proto.rawValue, first: policy.ports.lowerBound, last: policy.ports.upperBound)
                    let entry = SetEntry(address: container.address, mark: policy.sourceTag)
                    if let existing = sets[service] {
                        if existing.1.last != entry { sets[service]!.1.append(entry) }
                    } else {
                        sets[service] = (policy, [entry])
                    }
                }
                let prefix = "c2c-" + hex(container.address)
                for service in sets.keys.sorted() {
                    let (policy, entries) = sets[service]!
                    let name = setName(prefix, policy)
                    builder.set(name, SetSpec(type: .hashIPMark, family: family, entries: entries))
                    builder.append(family, .filter, chain, allowRule(policy, family: family, set: name))
                }
            }
            for rule in denied { builder.append(family, .filter, chain, rule) }
        }
        return builder.ruleset
    }

    static func host(_ address: IPAddress) -> IPPrefix { IPPrefix(address: address, length: address.family.bitCount)! }

    /// `-p PROTO -m mark --mark 0xTAG -m PROTO --dport PORTS -j ACCEPT`, or with a set of
    /// (address, tag) pairs instead of the mark: `-m set --match-set SET dst,dst`.
    static func allowRule(_ policy: Policy, family: IPFamily, set: String? = nil) -> Rule {
        let ports = Negatable(PortRange(policy.ports.lowerBound, policy.ports.upperBound))
        let portMatch: Match = policy.proto == .tcp ? .tcp(TCPMatch(destinationPorts: ports)) : .udp(UDPMatch(destinationPorts: ports))
        let who: Match = set.map { .set(SetMatch(name: $0, directions: [.dst, .dst])) } ?? .mark(MarkMatch(value: policy.sourceTag))
        return Rule(family: family, proto: Negatable(policy.proto == .tcp ? 6 : 17), matches: set == nil ? [who, portMatch] : [portMatch, who], target: .accept)
    }

    static func denyTexts(_ deny: DenyAction, family: IPFamily) -> [String] {
        switch deny {
        case .reject: return ["-j REJECT --reject-with \(family == .v4 ? "icmp-port-unreachable" : "icmp6-port-unreachable")"]
        case .drop: return ["-j DROP"]
        case .log: return ["-m limit --limit 2/sec --limit-burst 2 -j LOG --log-prefix \"DENY_C2C \"", "-j ACCEPT"]
        }
    }

    static func parse(_ text: String, _ family: IPFamily) throws -> [Rule] {
        do { return try RuleParser(family: family).parse(text) } catch { throw EngineError(.invalidInput, error.description, cause: error) }
    }

    /// `C2C-` and the address in hex: stable, so a changed policy rewrites only its chain.
    static func chainName(_ address: IPAddress) -> String { "C2C-" + hex(address) }

    /// `c2c-<address>-<t|u><first>[-<last>]` (prefix `c2c-<address>`): at most 31 characters, as ipset names allow.
    static func setName(_ prefix: String, _ policy: Policy) -> String {
        let ports = policy.ports.lowerBound == policy.ports.upperBound ? "\(policy.ports.lowerBound)" : "\(policy.ports.lowerBound)-\(policy.ports.upperBound)"
        return "\(prefix)-\(policy.proto == .tcp ? "t" : "u")\(ports)"
    }

    static func hex(_ address: IPAddress) -> String {
        address.bytes.suffix(address.family == .v4 ? 4 : 6).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
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
