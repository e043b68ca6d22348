import ArgumentParser
import Foundation
import IPSet
import IPTables
import NetNS
import RuleState
import Rules

// MARK: Shared options

struct GlobalOptions: ParsableArguments {
    @Option(help: "Network namespace to act in (a path such as /run/netns/NAME or /proc/PID/ns/net).")
    var netns: String?

    @Option(help: "State directory (default $DOCKNFV_STATE_DIR, /var/lib/docknfv, or /var/lib/docknfv/netns/NAME with --netns).")
    var stateDir: String?

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Validate and show what would change; change nothing.")
    var dryRun = false

    var store: StateStore {
        if let stateDir { return StateStore(directory: stateDir) }
        if let env = ProcessInfo.processInfo.environment["DOCKNFV_STATE_DIR"], !env.isEmpty { return StateStore(directory: env) }
        if let netns { return StateStore(directory: "/var/lib/docknfv/netns/" + (netns.split(separator: "/").last.map(String.init) ?? "ns")) }
        return StateStore(directory: "/var/lib/docknfv")
    }

    var manager: RuleManager { RuleManager(store: store, dryRun: dryRun) }

    /// The shape of every changing command: inside the namespace, change the desired state and
    /// apply it (RuleManager.mutate), then report `message` or, with --json, what was committed.
    func change(_ message: String, _ body: (inout DesiredState) throws -> Void) throws {
        try guarded {
            let (_, report) = try run { try manager.mutate(body) }
            emit(self, text: message, json: reportJSON(report, dryRun: dryRun))
        }
    }

    /// Runs `body` inside the namespace when --netns is given.
    func run<T>(_ body: () throws -> T) throws -> T {
        guard let netns else { return try body() }
        return try NetworkNamespace.run(path: netns, body)
    }
}

struct RuleLocation: ParsableArguments {
    @Option(help: "Table: filter, nat, mangle or raw.")
    var table: String = "filter"

    @Option(help: "Chain: a built-in chain of the table or a chain of docknfv's own.")
    var chain: String?

    @Option(name: [.customLong("family")], help: "ipv4 or ipv6 (default: from the rule, else ipv4).")
    var familyName: String?

    @Flag(name: [.customShort("4")], help: "IPv4.") var ipv4 = false
    @Flag(name: [.customShort("6")], help: "IPv6.") var ipv6 = false

    func parsedTable() throws -> NetfilterTable {
        guard let table = NetfilterTable(rawValue: table) else { throw ValidationError("--table \(table): expected filter, nat, mangle or raw") }
        return table
    }

    func family() throws -> IPFamily? {
        if ipv4 && ipv6 { throw ValidationError("-4 and -6 together") }
        if ipv4 { return .v4 }
        if ipv6 { return .v6 }
        guard let familyName else { return nil }
        switch familyName.lowercased() {
        case "ipv4", "4", "inet": return .v4
        case "ipv6", "6", "inet6": return .v6
        default: throw ValidationError("--family \(familyName): expected ipv4 or ipv6")
        }
    }

    func validChain(_ name: String, table: NetfilterTable) throws -> String {
        if table.builtinChains.contains(name) || ChainNames.isValidUserChain(name) { return name }
        throw ValidationError("--chain \(name): not a built-in chain of \(table.rawValue) and not a valid chain name (letters, digits, -_., at most \(ChainNames.maxKernelLength - ChainNames.prefix.count) characters)")
    }
}

func parseRule(_ words: [String], family: IPFamily?) throws -> [Rule] {
    guard !words.isEmpty else { throw ValidationError("no rule given: put it after --, e.g. -- -p tcp --dport 80 -j ACCEPT") }
    do {
        return try RuleParser(family: family, environment: ProcessInfo.processInfo.environment, resolver: Resolver.resolve).parse(tokens: words)
    } catch {
        throw ValidationError(error.description)
    }
}

enum Resolver {
    /// getaddrinfo for `-s host.example`: one rule per address.
    static func resolve(_ name: String, _ family: IPFamily?) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = family?.addressFamily ?? AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var out: [IPAddress] = []
        var node = result
        while let info = node {
            if info.pointee.ai_family == AF_INET, let sa = info.pointee.ai_addr {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { var a = $0.pointee.sin_addr; out.append(IPAddress(family: .v4, bytes: withUnsafeBytes(of: &a) { Array($0) })!) }
            } else if info.pointee.ai_family == AF_INET6, let sa = info.pointee.ai_addr {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { var a = $0.pointee.sin6_addr; out.append(IPAddress(family: .v6, bytes: withUnsafeBytes(of: &a) { Array($0) })!) }
            }
            node = info.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        return out.filter { seen.insert($0).inserted }
    }
}

func emit(_ global: GlobalOptions, text: String, json: [String: Any]) {
    if global.json {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        print(String(decoding: data, as: UTF8.self))
    } else if !text.isEmpty {
        print(text)
    }
}

func reportJSON(_ report: ApplyReport, dryRun: Bool) -> [String: Any] {
    ["committed": report.committed.map(\.description), "unchanged": report.unchanged.map(\.description), "sets": report.sets, "dryRun": dryRun]
}

func ruleJSON(_ rule: StoredRule) -> [String: Any] {
    ["id": rule.id, "family": rule.rule.family.rawValue, "table": rule.table.rawValue, "chain": rule.chain, "rule": rule.text]
}

/// Wraps errors from the library into argument-parser exits with a clear message.
func guarded(_ body: () throws -> Void) throws {
    do { try body() } catch let error as ValidationError { throw error } catch let error as ExitCode { throw error } catch {
        FileHandle.standardError.write(Data("docknfvctl: error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

// MARK: Commands

struct DockNFVCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docknfvctl",
        abstract: "Manage docknfv's firewall and NAT rules at runtime (inside a VNF, or from the host with --netns).",
        discussion: """
            docknfv keeps a desired state (rules.json in the state directory) and makes the kernel hold it: its \
            rules live in its own chains (DNFV-<chain>), entered by one jump at the top of each built-in chain; \
            every change is one libiptc commit per table and never touches rules docknfv does not own.
            """,
        subcommands: [RuleCommand.self, PolicyCommand.self, ChainCommand.self, NATCommand.self, IPSetCommand.self, ImportCommand.self,
                      SaveCommand.self, ApplyCommand.self, DiffCommand.self, StatusCommand.self])
}

struct RuleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rule", abstract: "Add, insert, delete, list and flush rules.",
                                                    subcommands: [Add.self, Insert.self, Del.self, List.self, Flush.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Append a rule (e.g. docknfvctl rule add --chain FORWARD -- -p tcp --dport 80 -j ACCEPT).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Option(help: "1-based position in the chain (default: the end).") var position: Int?
        @Argument(parsing: .postTerminator, help: "The rule, after --.") var rule: [String] = []

        func run() throws { try addRules(global: global, location: location, words: rule, position: position) }
    }

    struct Insert: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Insert a rule at a position (default 1).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Option(help: "1-based position in the chain.") var position: Int = 1
        @Argument(parsing: .postTerminator, help: "The rule, after --.") var rule: [String] = []

        func run() throws { try addRules(global: global, location: location, words: rule, position: position) }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a rule by id, or by its text in a chain.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Option(help: "The rule's id (see rule list).") var id: String?
        @Argument(parsing: .postTerminator, help: "The rule, after --.") var rule: [String] = []

        func run() throws {
            let table = try location.parsedTable()
            let wanted = id == nil ? try parseRule(rule, family: try location.family()) : []
            if id == nil && location.chain == nil { throw ValidationError("give --id, or --chain and the rule after --") }
            try global.change("deleted") { state in
                let before = state.rules.count
                if let id {
                    state.rules.removeAll { $0.id == id }
                    if state.rules.count == before { throw ValidationError("no rule with id \(id)") }
                } else {
                    for rule in wanted {
                        guard let index = state.rules.firstIndex(where: { $0.table == table && $0.chain == location.chain && $0.rule == rule }) else {
                            throw ValidationError("chain \(location.chain!) in \(table.rawValue) has no rule \"\(RuleRenderer.render(rule))\"")
                        }
                        state.rules.remove(at: index)
                    }
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List docknfv's rules with their ids.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this table.") var table: String?
        @Option(help: "Only this chain.") var chain: String?

        func run() throws {
            try guarded {
                let state = try global.store.load()
                let rules = state.rules.filter { (table == nil || $0.table.rawValue == table) && (chain == nil || $0.chain == chain) }
                let text = rules.map { "\($0.id)\t\($0.rule.family)\t\($0.table.rawValue)\t\($0.chain)\t\($0.text)" }.joined(separator: "\n")
                emit(global, text: text, json: ["rules": rules.map(ruleJSON)])
            }
        }
    }

    struct Flush: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete all of docknfv's rules, or those of one chain / table.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this table.") var table: String?
        @Option(help: "Only this chain.") var chain: String?

        func run() throws {
            if let table, NetfilterTable(rawValue: table) == nil { throw ValidationError("--table \(table): expected filter, nat, mangle or raw") }
            try global.change("flushed") { state in
                state.rules.removeAll { (table == nil || $0.table.rawValue == table) && (chain == nil || $0.chain == chain) }
                if chain == nil {
                    state.policies = state.policies.filter { table != nil && $0.key.key.table.rawValue != table }
                    state.userChains = state.userChains.filter { table != nil && $0.key.table.rawValue != table }
                }
            }
        }
    }
}

/// `rule add` and `rule insert`: the location options checked, then the rules added.
func addRules(global: GlobalOptions, location: RuleLocation, words: [String], position: Int?) throws {
    let table = try location.parsedTable()
    guard let chain = location.chain else { throw ValidationError("--chain is required") }
    try addRules(global: global, table: table, chain: try location.validChain(chain, table: table),
                 family: try location.family(), words: words, position: position)
}

func addRules(global: GlobalOptions, table: NetfilterTable, chain: String, family: IPFamily?, words: [String], position: Int?) throws {
    let rules = try parseRule(words, family: family)
    if let position, position < 1 { throw ValidationError("--position must be 1 or more") }
    try guarded {
        var added: [StoredRule] = []
        let (_, report) = try global.run {
            try global.manager.mutate { state in
                var index = position.map { p in
                    // Position within the chain → index in the flat list.
                    let inChain = state.rules.enumerated().filter { $0.element.table == table && $0.element.chain == chain }
                    return p - 1 < inChain.count ? inChain[p - 1].offset : state.rules.count
                } ?? state.rules.count
                for rule in rules {
                    if !table.builtinChains.contains(chain) { state.userChains.insert(.init(TableKey(rule.family, table), chain)) }
                    let stored = StoredRule(id: state.newID(), table: table, chain: chain, rule: rule)
                    state.rules.insert(stored, at: index)
                    added.append(stored)
                    index += 1
                }
            }
        }
        emit(global, text: added.map { "\($0.id)\t\($0.text)" }.joined(separator: "\n"),
             json: reportJSON(report, dryRun: global.dryRun).merging(["rules": added.map(ruleJSON)]) { a, _ in a })
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "policy", abstract: "Set a built-in chain's policy (ACCEPT or DROP).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var location: RuleLocation
    @Argument(help: "The built-in chain.") var chainName: String
    @Argument(help: "ACCEPT or DROP.") var policy: String

    func run() throws {
        let table = try location.parsedTable()
        guard table.builtinChains.contains(chainName) else { throw ValidationError("\(chainName) is not a built-in chain of \(table.rawValue)") }
        guard ["ACCEPT", "DROP"].contains(policy.uppercased()) else { throw ValidationError("policy \(policy): expected ACCEPT or DROP") }
        let family = try location.family() ?? .v4
        try global.change("policy \(chainName) \(policy.uppercased())") { state in
            state.policies[.init(TableKey(family, table), chainName)] = policy.uppercased()
        }
    }
}

struct ChainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "chain", abstract: "Create or delete one of docknfv's own chains.",
                                                    subcommands: [Create.self, Delete.self])
    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Argument var name: String
        func run() throws {
            let table = try location.parsedTable()
            guard ChainNames.isValidUserChain(name), !table.builtinChains.contains(name) else { throw ValidationError("chain name \(name) is invalid or too long") }
            let family = try location.family() ?? .v4
            try global.change("chain \(name)") { $0.userChains.insert(.init(TableKey(family, table), name)) }
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Argument var name: String
        func run() throws {
            let table = try location.parsedTable()
            let family = try location.family() ?? .v4
            try global.change("deleted chain \(name)") { state in
                let key = TableKey(family, table)
                if state.rules.contains(where: { $0.key == key && $0.rule.target.chain == name }) {
                    throw ValidationError("rules still jump to \(name); delete them first")
                }
                state.rules.removeAll { $0.key == key && $0.chain == name }
                state.userChains.remove(.init(key, name))
            }
        }
    }
}

struct NATCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nat", abstract: "NAT helpers.",
                                                    subcommands: [Masquerade.self, DNAT.self, SNAT.self])

    struct Masquerade: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Masquerade traffic leaving an interface.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("out-interface"), help: "Interface the traffic leaves by.") var outInterface: String
        @Option(help: "Only from this source CIDR.") var source: String?
        func run() throws {
            var words = ["-o", outInterface]
            if let source { words = ["-s", source] + words }
            try addNAT(global, chain: "POSTROUTING", words + ["-j", "MASQUERADE"])
        }
    }

    struct DNAT: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Forward a port to another address (port mapping).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "tcp or udp.") var proto: String = "tcp"
        @Option(help: "The port to map.") var port: String
        @Option(help: "ADDRESS[:PORT] to send it to ([v6]:PORT for IPv6).") var to: String
        @Option(name: .customLong("in-interface"), help: "Only traffic arriving here.") var inInterface: String?
        @Option(help: "Only traffic to this address.") var destination: String?
        func run() throws {
            var words = ["-p", proto]
            if let destination { words += ["-d", destination] }
            if let inInterface { words += ["-i", inInterface] }
            try addNAT(global, chain: "PREROUTING", words + ["--dport", port, "-j", "DNAT", "--to-destination", to])
        }
    }

    struct SNAT: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rewrite the source address of traffic.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Source CIDR to rewrite.") var source: String
        @Option(help: "The new source address.") var to: String
        @Option(name: .customLong("out-interface"), help: "Only traffic leaving here.") var outInterface: String?
        func run() throws {
            var words = ["-s", source]
            if let outInterface { words += ["-o", outInterface] }
            try addNAT(global, chain: "POSTROUTING", words + ["-j", "SNAT", "--to-source", to])
        }
    }
}

func addNAT(_ global: GlobalOptions, chain: String, _ words: [String]) throws {
    try addRules(global: global, table: .nat, chain: chain, family: nil, words: words, position: nil)
}

struct IPSetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ipset", abstract: "Manage docknfv's ipsets (hash:net, hash:ip, hash:ip,port).",
                                                    subcommands: [Create.self, Add.self, Del.self, List.self, Destroy.self])

    static func parseEntries(_ texts: [String], _ spec: DesiredState.SetSpec, set: String) throws -> [SetEntry] {
        try texts.map { text in
            guard let entry = SetEntry(text, type: spec.type), entry.family == spec.family else {
                throw ValidationError("\(text) is not a valid \(spec.family) element of \(spec.type.rawValue) set \(set)")
            }
            return entry
        }
    }

    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Flag(name: [.customShort("6")], help: "An IPv6 set.") var ipv6 = false
        @Argument var name: String
        @Argument(help: "hash:net, hash:ip or hash:ip,port.") var type: String
        @Argument(help: "Initial elements.") var entries: [String] = []
        func run() throws {
            guard let setType = SetType(rawValue: type) else { throw ValidationError("set type \(type): expected hash:net, hash:ip or hash:ip,port") }
            guard !name.isEmpty, name.utf8.count <= IPSet.maxNameLength - 4, !name.contains(" ") else { throw ValidationError("set name \(name): 1 to 27 characters, no spaces") }
            var spec = DesiredState.SetSpec(type: setType, family: ipv6 ? .v6 : .v4)
            spec.entries = try IPSetCommand.parseEntries(entries, spec, set: name)
            try global.change("set \(name)") { state in
                if state.sets[name] != nil { throw ValidationError("set \(name) exists already") }
                state.sets[name] = spec
            }
        }
    }

    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var entries: [String]
        func run() throws {
            try global.change("added \(entries.count) element(s) to \(name)") { state in
                guard var spec = state.sets[name] else { throw ValidationError("no docknfv set \(name)") }
                for entry in try IPSetCommand.parseEntries(entries, spec, set: name) where !spec.entries.contains(entry) { spec.entries.append(entry) }
                state.sets[name] = spec
            }
        }
    }

    struct Del: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var entries: [String]
        func run() throws {
            try global.change("deleted \(entries.count) element(s) from \(name)") { state in
                guard var spec = state.sets[name] else { throw ValidationError("no docknfv set \(name)") }
                let gone = try IPSetCommand.parseEntries(entries, spec, set: name)
                for entry in gone where !spec.entries.contains(entry) { throw ValidationError("\(entry) is not in set \(name)") }
                spec.entries.removeAll { gone.contains($0) }
                state.sets[name] = spec
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String?
        func run() throws {
            try guarded {
                let state = try global.store.load()
                let names = state.sets.keys.sorted().filter { name == nil || $0 == name }
                if let name, names.isEmpty { throw ValidationError("no docknfv set \(name)") }
                let text = names.map { n in
                    let spec = state.sets[n]!
                    return "\(n) \(spec.type.rawValue) \(spec.family) (\(spec.entries.count) elements)\n" + spec.entries.map { "  \($0)" }.joined(separator: "\n")
                }.joined(separator: "\n")
                emit(global, text: text, json: ["sets": names.map { n -> [String: Any] in
                    let spec = state.sets[n]!
                    return ["name": n, "type": spec.type.rawValue, "family": spec.family.rawValue, "entries": spec.entries.map(\.description)]
                }])
            }
        }
    }

    struct Destroy: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        func run() throws {
            try global.change("destroyed \(name)") { state in
                guard state.sets[name] != nil else { throw ValidationError("no docknfv set \(name)") }
                if let user = state.rules.first(where: { $0.rule.matches.contains { if case .set(let s) = $0 { return s.name == name }; return false } }) {
                    throw ValidationError("rule \(user.id) matches on set \(name); delete it first")
                }
                state.sets[name] = nil
            }
        }
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Add the rules of an iptables-save file (or -) as one atomic change.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.customShort("6")], help: "The file is ip6tables-save output.") var ipv6 = false
    @Argument(help: "File, or - for standard input.") var file: String

    func run() throws {
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            text = String(decoding: data, as: UTF8.self)
        }
        let family: IPFamily = ipv6 ? .v6 : .v4
        let save: SaveFile
        do {
            save = try SaveFileReader.read(text, family: family, parser: RuleParser(environment: ProcessInfo.processInfo.environment, resolver: Resolver.resolve))
        } catch { throw ValidationError("\(file): \(error)") }
        try guarded {
            let (_, report) = try global.run {
                try global.manager.mutate { state in
                    for section in save.tables {
                        let key = TableKey(family, section.table)
                        for chain in section.chains {
                            if let policy = chain.policy { if policy != "ACCEPT" { state.policies[.init(key, chain.name)] = policy } }
                            else { state.userChains.insert(.init(key, chain.name)) }
                        }
                        for (chain, rule) in section.rules {
                            state.rules.append(StoredRule(id: state.newID(), table: section.table, chain: chain, rule: rule))
                        }
                    }
                }
            }
            let count = save.tables.reduce(0) { $0 + $1.rules.count }
            emit(global, text: "imported \(count) rules", json: reportJSON(report, dryRun: global.dryRun).merging(["imported": count]) { a, _ in a })
        }
    }
}

struct SaveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "save", abstract: "Print the desired state (iptables-save format, or JSON).")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try guarded {
            let state = try global.store.load()
            let text = [IPFamily.v4, .v6].map { state.saveText(family: $0) }.filter { !$0.isEmpty }
                .enumerated().map { $0.offset == 0 ? $0.element : "# ipv6\n" + $0.element }.joined()
            emit(global, text: text.hasSuffix("\n") ? String(text.dropLast()) : text,
                 json: ["rules": state.rules.map(ruleJSON),
                        "policies": state.policies.map { ["family": $0.key.key.family.rawValue, "table": $0.key.key.table.rawValue, "chain": $0.key.chain, "policy": $0.value] },
                        "chains": state.userChains.sorted().map { ["family": $0.key.family.rawValue, "table": $0.key.table.rawValue, "chain": $0.chain] }])
        }
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Re-apply the desired state to the kernel.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try guarded {
            let report = try global.run { try global.manager.apply() }
            emit(global, text: "committed: \(report.committed.map(\.description).joined(separator: ", ")); unchanged: \(report.unchanged.map(\.description).joined(separator: ", "))",
                 json: reportJSON(report, dryRun: global.dryRun))
        }
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Show what the kernel holds that differs from the desired state (exit 1 if anything).")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        var differs = false
        try guarded {
            let drift = try global.run { try global.manager.diff() }
            var lines: [String] = []
            for (key, d) in drift {
                lines += d.missing.map { "\(key) missing: \($0)" }
                lines += d.unexpected.map { "\(key) unexpected: \($0)" }
            }
            differs = !lines.isEmpty
            emit(global, text: lines.isEmpty ? "in sync" : lines.joined(separator: "\n"),
                 json: ["inSync": lines.isEmpty, "tables": Dictionary(uniqueKeysWithValues: drift.map { ($0.0.description, ["missing": $0.1.missing, "unexpected": $0.1.unexpected]) })])
        }
        if differs { throw ExitCode(1) }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Summarise the desired state, its sync with the kernel and the backend.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try guarded {
            let state = try global.store.load()
            let (drift, nft) = try global.run { (try global.manager.diff(), NFTablesProbe.tablesInUse()) }
            let inSync = drift.allSatisfy { $0.1.isEmpty }
            var lines = ["state: \(global.store.path)", "rules: \(state.rules.count) in \(Set(state.rules.map(\.key)).count) table(s)",
                         "backend: \(global.manager.engine.name)", "kernel: \(inSync ? "in sync" : "differs (see docknfvctl diff)")"]
            if !nft.isEmpty {
                lines.append("warning: nf_tables also holds tables here (\(nft.joined(separator: ", "))); rules there (iptables-nft) are evaluated too and docknfv does not manage them")
            }
            emit(global, text: lines.joined(separator: "\n"),
                 json: ["stateFile": global.store.path, "rules": state.rules.count, "backend": "legacy", "inSync": inSync, "nftablesTables": nft])
        }
    }
}

/// Global options may come before the subcommand (`docknfvctl --netns P rule add …`); argument
/// parser wants them on the leaf command, so they are moved just before `--` (or to the end).
func relocatingGlobalOptions(_ arguments: [String]) -> [String] {
    let withValue: Set<String> = ["--netns", "--state-dir"], flags: Set<String> = ["--json", "--dry-run"]
    var globals: [String] = [], rest: [String] = []
    var index = 0
    var leading = true
    while index < arguments.count {
        let argument = arguments[index]
        if argument == "--" { leading = false }
        if leading, withValue.contains(argument), index + 1 < arguments.count, rest.count < 1 || !rest.contains("--") {
            if rest.isEmpty || !(rest.last?.hasPrefix("-") ?? false) {
                globals += [argument, arguments[index + 1]]
                index += 2
                continue
            }
        }
        if leading, flags.contains(argument) { globals.append(argument); index += 1; continue }
        rest.append(argument)
        index += 1
    }
    if let separator = rest.firstIndex(of: "--") { rest.insert(contentsOf: globals, at: separator) } else { rest += globals }
    return rest
}

DockNFVCtl.main(relocatingGlobalOptions(Array(CommandLine.arguments.dropFirst())))
