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
        try IncrementalPlanner().plan(policies, containers: containers, overlay: overlay, deny: deny, style: style)
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

/// The enforcement planner with a memory: successive plans (one per poll) rebuild only the
/// destinations whose policies changed and reuse the rule entries of the others, so a poll that
/// changes one policy among thousands plans one chain. The plan is the same as from scratch.
public final class IncrementalPlanner: @unchecked Sendable { // used by one poll loop at a time
    struct Settings: Equatable { var overlay: IPPrefix, deny: DenyAction, style: EnforcementStyle }
    /// One destination's part: its chain's rules and its sets, for the policies it was made from.
    struct Destination { var allowed: [Policy], jump: RuleEntry, rules: [RuleEntry], sets: [(String, SetSpec)] }
    private var settings: Settings?
    private var destinations: [LocalContainer: Destination] = [:]
    private var marks: [LocalContainer: (UInt32, RuleEntry)] = [:]
    /// How many destinations the last plan built again (the others were reused).
    public private(set) var lastRebuilt = 0

    public init() {}

    public func plan(_ policies: [Policy], containers: [LocalContainer], overlay: IPPrefix, deny: DenyAction = .reject,
                     style: EnforcementStyle = .rules) throws -> Ruleset {
        let settings = Settings(overlay: overlay, deny: deny, style: style)
        if settings != self.settings { destinations = [:]; marks = [:]; self.settings = settings }
        var builder = RulesetBuilder(owner: EnforcementPlanner.owner)
        let family = overlay.family
        let local = containers.filter { $0.address.family == family && overlay.contains($0.address) }.sorted { $0.address < $1.address }
        // Each group's tag, as the policies name it (a group is a source in some policy to be marked),
        // and each destination group's policies.
        var tags: [String: UInt32] = [:], byDestination: [String: [Policy]] = [:]
        for policy in policies {
            tags[policy.sourceID] = policy.sourceTag
            byDestination[policy.destinationID, default: []].append(policy)
        }
        var marks: [LocalContainer: (UInt32, RuleEntry)] = [:]
        for container in local {
            guard let group = container.groupID, let tag = tags[group] else { continue }
            let entry = self.marks[container].flatMap { $0.0 == tag ? $0.1 : nil } ?? RuleEntry(Rule(
                family: family, source: Negatable(EnforcementPlanner.host(container.address)), destination: Negatable(overlay),
                target: .mark(value: tag, mask: 0xffff_ffff)))
            marks[container] = (tag, entry)
            builder.append(family, .mangle, "PREROUTING", entry: entry)
        }
        self.marks = marks
        var destinations: [LocalContainer: Destination] = [:]
        var fixed: (established: [Rule], denied: [Rule])?
        lastRebuilt = 0
        for container in local {
            let allowed = container.groupID.flatMap { byDestination[$0] } ?? []
            var part: Destination
            if let known = self.destinations[container], known.allowed == allowed {
                part = known
            } else {
                // The same few rules in every chain: parsed once per plan that needs them.
                if fixed == nil {
                    fixed = (try EnforcementPlanner.parse("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", family),
                             try EnforcementPlanner.denyTexts(deny, family: family).flatMap { try EnforcementPlanner.parse($0, family) })
                }
                part = build(container, allowed: allowed, overlay: overlay, style: style, established: fixed!.established, denied: fixed!.denied)
                lastRebuilt += 1
            }
            destinations[container] = part
            let chain = EnforcementPlanner.chainName(container.address)
            builder.chain(family, .filter, chain)
            builder.append(family, .filter, "FORWARD", entry: part.jump)
            for entry in part.rules { builder.append(family, .filter, chain, entry: entry) }
            for (name, spec) in part.sets { builder.set(name, spec) }
        }
        self.destinations = destinations
        return builder.ruleset
    }

    func build(_ container: LocalContainer, allowed unsorted: [Policy], overlay: IPPrefix, style: EnforcementStyle,
               established: [Rule], denied: [Rule]) -> Destination {
        let family = overlay.family
        let chain = EnforcementPlanner.chainName(container.address)
        let allowed = unsorted.sorted(by: EnforcementPlanner.order)
        var rules = established
        var sets: [(String, SetSpec)] = []
        switch style {
        case .rules:
            var seen = Set<Rule>()
            for policy in allowed {
                let rule = EnforcementPlanner.allowRule(policy, family: family)
                if seen.insert(rule).inserted { rules.append(rule) }
            }
        case .sets:
            // One set per (protocol, ports).
            struct Service: Hashable, Comparable {
                var proto: String, first: UInt16, last: UInt16
                static func < (a: Service, b: Service) -> Bool { (a.proto, a.first, a.last) < (b.proto, b.first, b.last) }
            }
            var byService: [Service: (Policy, [SetEntry])] = [:]
            for policy in allowed {
                let service = Service(proto: policy.proto.rawValue, first: policy.ports.lowerBound, last: policy.ports.upperBound)
                let entry = SetEntry(address: container.address, mark: policy.sourceTag)
                if let existing = byService[service] {
                    if existing.1.last != entry { byService[service]!.1.append(entry) }
                } else {
                    byService[service] = (policy, [entry])
                }
            }
            let prefix = "c2c-" + EnforcementPlanner.hex(container.address)
            for service in byService.keys.sorted() {
                let (policy, entries) = byService[service]!
                let name = EnforcementPlanner.setName(prefix, policy)
                sets.append((name, SetSpec(type: .hashIPMark, family: family, entries: entries)))
                rules.append(EnforcementPlanner.allowRule(policy, family: family, set: name))
            }
        }
        rules += denied
        let jump = Rule(family: family, source: Negatable(overlay), destination: Negatable(EnforcementPlanner.host(container.address)), target: .jump(chain))
        return Destination(allowed: unsorted, jump: RuleEntry(jump), rules: rules.map(RuleEntry.init), sets: sets)
    }
}
