/// A netfilter hook: where a built-in chain sits in the packet path.
public enum NetfilterHook: String, CaseIterable, Hashable, Sendable {
    case prerouting = "PREROUTING", input = "INPUT", forward = "FORWARD", output = "OUTPUT", postrouting = "POSTROUTING"

    /// The hook of a built-in chain name (`FORWARD` → .forward); nil for a user chain.
    public init?(builtinChain: String) { self.init(rawValue: builtinChain) }
}

/// A rule that does not fit the table or chain it is meant for. Names the token and the reason.
public struct RuleContextError: Error, Equatable, CustomStringConvertible {
    public var token: String
    public var reason: String
    public var description: String { "\"\(token)\": \(reason)" }
}

/// Where each match and target may be used: the one table of context rules (table, chain name,
/// hook) that every backend applies before it builds anything. The x_tables kernel checks some of
/// these again at commit; iptables' own front end checks the rest (DROP in nat, `-i` in
/// POSTROUTING…); a backend that has neither check (nftables) relies on this table alone.
public enum RuleContext {
    /// Per target: the tables it may be used in (nil = any) and the hooks a rule using it may be
    /// reached from (nil = any).
    public struct TargetRule: Sendable {
        public var tables: Set<NetfilterTable>?
        public var hooks: Set<NetfilterHook>?
    }

    /// The table. Measured against iptables 1.8.9 and the kernel's xt checks (both families).
    public static func targetRule(_ target: Target) -> TargetRule {
        switch target {
        case .dnat: return TargetRule(tables: [.nat], hooks: [.prerouting, .output])
        case .redirect: return TargetRule(tables: [.nat], hooks: [.prerouting, .output])
        case .snat: return TargetRule(tables: [.nat], hooks: [.postrouting, .input])
        case .masquerade: return TargetRule(tables: [.nat], hooks: [.postrouting])
        case .reject: return TargetRule(tables: [.filter], hooks: [.input, .forward, .output])
        // iptables refuses DROP in nat ("not intended for filtering").
        case .drop: return TargetRule(tables: [.filter, .mangle, .raw], hooks: nil)
        // Clamping to the path MTU needs the route: FORWARD, OUTPUT, POSTROUTING only.
        case .tcpmss(nil): return TargetRule(tables: nil, hooks: [.forward, .output, .postrouting])
        default: return TargetRule(tables: nil, hooks: nil)
        }
    }

    static func targetTables(_ target: Target) -> Set<NetfilterTable>? { targetRule(target).tables }

    /// Per match: the hooks a rule using it may be reached from, and the token and words that
    /// name it in an error; nil = any hook. From the kernel's xt checks.
    public static func matchHooks(_ match: Match) -> (token: String, name: String, hooks: Set<NetfilterHook>)? {
        switch match {
        // xt_owner registers for LOCAL_OUT and POST_ROUTING only: the sending socket is known there.
        case .owner: return ("owner", "-m owner", [.output, .postrouting])
        // xt_addrtype: there is an input interface on the way in, an output interface on the way out.
        case .addrtype(let addrtype) where addrtype.limit == .input:
            return ("--limit-iface-in", "-m addrtype --limit-iface-in", [.prerouting, .input, .forward])
        case .addrtype(let addrtype) where addrtype.limit == .output:
            return ("--limit-iface-out", "-m addrtype --limit-iface-out", [.forward, .output, .postrouting])
        default: return nil
        }
    }

    /// Throws unless `rule` may stand in `chain` of `table`. `builtinHooks`: the hooks a user chain
    /// is reached from (nil: its own hook for a built-in chain, none known for a user chain).
    public static func validate(_ rule: Rule, table: NetfilterTable, chain: String,
                                builtinHooks: Set<NetfilterHook>? = nil) throws(RuleContextError) {
        let targetName = RuleRenderer.targetName(rule.target)
        let builtin = table.builtinChains.contains(chain) ? NetfilterHook(builtinChain: chain) : nil
        // Interfaces: no input interface on the way out, no output interface on the way in
        // (iptables checks these by chain name).
        if let builtin {
            if rule.inInterface != nil, builtin == .postrouting || builtin == .output {
                throw RuleContextError(token: "-i", reason: "an input interface cannot be used in \(chain)")
            }
            if rule.outInterface != nil, builtin == .prerouting || builtin == .input {
                throw RuleContextError(token: "-o", reason: "an output interface cannot be used in \(chain)")
            }
        }
        let allowed = targetRule(rule.target)
        if let tables = allowed.tables, !tables.contains(table) {
            let list = NetfilterTable.allCases.filter(tables.contains).map(\.rawValue).joined(separator: ", ")
            throw RuleContextError(token: targetName, reason: "target \(targetName) is not allowed in table \(table.rawValue) (only \(list))")
        }
        let hooks = builtinHooks ?? builtin.map { [$0] } ?? []
        func requireHooks(_ allowed: Set<NetfilterHook>?, token: String, name: String) throws(RuleContextError) {
            guard let allowed, let bad = NetfilterHook.allCases.first(where: { hooks.contains($0) && !allowed.contains($0) }) else { return }
            let list = NetfilterHook.allCases.filter(allowed.contains).map(\.rawValue).joined(separator: ", ")
            throw RuleContextError(token: token, reason: "\(name) cannot be reached from \(bad.rawValue) (only \(list))")
        }
        try requireHooks(allowed.hooks, token: targetName, name: "target \(targetName)")
        for match in rule.matches {
            if let limited = matchHooks(match) { try requireHooks(limited.hooks, token: limited.token, name: limited.name) }
        }
    }
}
