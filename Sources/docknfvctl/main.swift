import ArgumentParser
import Foundation
import NetNS
import RuleEngine
import RuleState

// docknfvctl: argument parsing and printing only; everything else is RuleState's library API.

// MARK: Shared options

struct GlobalOptions: ParsableArguments {
    @Option(help: "Network namespace to act in (a path such as /run/netns/NAME or /proc/PID/ns/net).")
    var netns: String?

    @Option(help: "State directory (default $DOCKNFV_STATE_DIR, /var/lib/docknfv, or a directory per namespace with --netns).")
    var stateDir: String?

    @Option(help: "Backend: auto (default: what docknfv's state uses, else the one kind of rules the namespace holds, else the system's iptables variant), nftables or iptables.")
    var backend: String = ProcessInfo.processInfo.environment["DOCKNFV_BACKEND"] ?? "auto"

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Validate and show what would change; change nothing.")
    var dryRun = false

    func store() throws -> StateStore {
        if let stateDir { return StateStore(directory: stateDir) }
        if let env = ProcessInfo.processInfo.environment["DOCKNFV_STATE_DIR"] { return StateStore(directory: env) }
        if let netns { return StateStore(directory: "/var/lib/docknfv/netns/" + (try NamespaceKey.of(netns))) }
        return StateStore(directory: "/var/lib/docknfv")
    }

    func manager() throws -> RuleManager {
        RuleManager(store: try store(), backend: try BackendChoice(parsing: backend), dryRun: dryRun)
    }

    /// Runs `body` inside the namespace when --netns is given.
    func run<T>(_ body: () throws -> T) throws -> T {
        guard let netns else { return try body() }
        return try NetworkNamespace.run(path: netns, body)
    }

    /// The shape of every changing command: inside the namespace, change the desired state and
    /// apply it, then print `message` or, with --json, what was done.
    func change(_ message: String, _ body: (inout DesiredState) throws -> Void) throws {
        try guarded {
            let manager = try manager()
            let (state, report) = try run { try manager.mutate(body) }
            emit(text: message, json: Output.Report(report, dryRun: dryRun, backend: state.backend))
        }
    }

    func emit<T: Encodable>(text: String, json value: T) {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
        } else if !text.isEmpty {
            print(text)
        }
    }
}

/// The state directory of a namespace given by path: its name for /run/netns/NAME, else the
/// namespace's own identity (its inode), so /proc/A/ns/net and /proc/B/ns/net never share a file.
enum NamespaceKey {
    static func of(_ path: String) throws -> String {
        for prefix in ["/run/netns/", "/var/run/netns/"] where path.hasPrefix(prefix) && !path.dropFirst(prefix.count).contains("/") {
            return String(path.dropFirst(prefix.count))
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw EngineError(.invalidInput, "--netns \(path): \(String(cString: strerror(errno)))") }
        return "ino-\(info.st_dev)-\(info.st_ino)"
    }
}

struct RuleLocation: ParsableArguments {
    @Option(help: "Table: filter, nat, mangle or raw.")
    var table: String = "filter"

    @Option(help: "Chain: a built-in chain of the table or a chain created with `chain create`.")
    var chain: String?

    @Option(name: [.customLong("family")], help: "ipv4 or ipv6 (default: from the rule, else ipv4).")
    var familyName: String?

    @Flag(name: [.customShort("4")], help: "IPv4.") var ipv4 = false
    @Flag(name: [.customShort("6")], help: "IPv6.") var ipv6 = false

    func parsedTable() throws -> NetfilterTable {
        guard let table = NetfilterTable(rawValue: table) else { throw badValue("--table \(DisplayText.quoted(table)): expected filter, nat, mangle or raw") }
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
        default: throw badValue("--family \(DisplayText.quoted(familyName)): expected ipv4 or ipv6")
        }
    }

    /// Argument syntax, checked while parsing (so the usage shown is the command's own).
    func validate() throws { if ipv4 && ipv6 { throw ValidationError("-4 and -6 together") } }

    func key() throws -> TableKey { TableKey(try family() ?? .v4, try parsedTable()) }

    func validChain(_ name: String, table: NetfilterTable) throws -> String {
        if table.builtinChains.contains(name) || ChainNames.isValidUserChain(name) { return name }
        throw badValue("--chain \(DisplayText.quoted(name)): not a built-in chain of \(table.rawValue) and not a valid chain name (letters, digits, -_., at most \(ChainNames.maxKernelLength - ChainNames.prefix.count) characters)")
    }
}

func parseRule(_ words: [String], family: IPFamily?) throws -> [Rule] {
    guard !words.isEmpty else { throw EngineError(.invalidInput, "no rule given: put it after --, e.g. -- -p tcp --dport 80 -j ACCEPT") }
    do {
        return try RuleParser(family: family, environment: ProcessInfo.processInfo.environment, resolver: HostResolver.resolve).parse(tokens: words)
    } catch {
        throw EngineError(.invalidInput, error.description)
    }
}

/// A bad value of an option or argument: a domain error (one message, exit 65, no usage text),
/// unlike argument syntax errors (`ValidationError`: 64 and the usage).
func badValue(_ message: String) -> EngineError { EngineError(.invalidInput, message) }

/// Exit statuses for domain errors (argument syntax errors keep argument-parser's 64 and usage).
enum ExitStatus {
    static func of(_ code: EngineError.Code) -> Int32 {
        switch code {
        case .invalidInput, .unsupported, .conflict: return 65 // EX_DATAERR
        case .busy: return 75 // EX_TEMPFAIL: try again later
        case .permission: return 77 // EX_NOPERM
        case .invalidState, .kernel, .io: return 1
        }
    }
}

/// Prints a domain error as one message (no usage text) and exits with its status.
func guarded<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as ValidationError { throw error } catch let error as ExitCode { throw error } catch {
        let engine = error as? EngineError ?? EngineError(.kernel, "\(error)")
        FileHandle.standardError.write(Data("docknfvctl: error: \(engine.message)\n".utf8))
        throw ExitCode(ExitStatus.of(engine.code))
    }
}

// MARK: Commands

struct DockNFVCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docknfvctl",
        abstract: "Manage docknfv's firewall and NAT rules at runtime (inside a VNF, or from the host with --netns).",
        discussion: """
            docknfv keeps a desired state (rules.json in the state directory) and makes the kernel hold it through \
            one of two backends: nftables (its own tables, ip/ip6 docknfv, changed in one atomic batch) or legacy \
            x_tables through libiptc (its own chains DNFV-<chain>, one commit per table). It never touches rules it \
            does not own. Exit status: 0 done, 1 kernel or file error, 64 bad arguments, 65 bad rule or value, \
            75 busy (try again later), 77 not permitted.
            """,
        subcommands: [RuleCommand.self, PolicyCommand.self, ChainCommand.self, NATCommand.self, IPSetCommand.self, ImportCommand.self,
                      SaveCommand.self, ApplyCommand.self, DiffCommand.self, StatusCommand.self, MigrateCommand.self])
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

        func validate() throws { if location.chain == nil { throw ValidationError("--chain is required") } }
        func run() throws { try addRules(global: global, location: location, words: rule, position: position) }
    }

    struct Insert: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Insert a rule at a position (default 1).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Option(help: "1-based position in the chain.") var position: Int = 1
        @Argument(parsing: .postTerminator, help: "The rule, after --.") var rule: [String] = []

        func validate() throws { if location.chain == nil { throw ValidationError("--chain is required") } }
        func run() throws { try addRules(global: global, location: location, words: rule, position: position) }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a rule by id, or by its text in a chain.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Option(help: "The rule's id (see rule list).") var id: String?
        @Argument(parsing: .postTerminator, help: "The rule, after --.") var rule: [String] = []

        func validate() throws { if id == nil && location.chain == nil { throw ValidationError("give --id, or --chain and the rule after --") } }
        func run() throws {
            try guarded {
                let table = try location.parsedTable()
                let wanted = id == nil ? try parseRule(rule, family: try location.family()) : []
                try global.change("deleted") { state in
                    if let id { try state.deleteRule(id: id) } else { try state.deleteRules(wanted, table: table, chain: location.chain!) }
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
                let state = try global.store().load()
                let rules = state.rules.filter { (table == nil || $0.table.rawValue == table) && (chain == nil || $0.chain == chain) }
                let text = rules.map { "\($0.id)\t\($0.rule.family)\t\($0.table.rawValue)\t\($0.chain)\t\($0.text)" }.joined(separator: "\n")
                global.emit(text: text, json: Output.RuleList(rules: rules.map(Output.RuleInfo.init)))
            }
        }
    }

    struct Flush: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete all of docknfv's rules, or those of one chain / table.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this table.") var table: String?
        @Option(help: "Only this chain.") var chain: String?

        func run() throws {
            try guarded {
                var parsed: NetfilterTable?
                if let table {
                    guard let value = NetfilterTable(rawValue: table) else { throw badValue("--table \(DisplayText.quoted(table)): expected filter, nat, mangle or raw") }
                    parsed = value
                }
                try global.change("flushed") { try $0.flush(table: parsed, chain: chain) }
            }
        }
    }
}

/// `rule add` and `rule insert`: the location options checked, then the rules added.
func addRules(global: GlobalOptions, location: RuleLocation, words: [String], position: Int?) throws {
    guard let chain = location.chain else { throw ValidationError("--chain is required") }
    try guarded {
        let table = try location.parsedTable()
        try addRules(global: global, table: table, chain: try location.validChain(chain, table: table),
                     family: try location.family(), words: words, position: position)
    }
}

func addRules(global: GlobalOptions, table: NetfilterTable, chain: String, family: IPFamily?, words: [String], position: Int?) throws {
    try guarded {
        let rules = try parseRule(words, family: family)
        var added: [StoredRule] = []
        let manager = try global.manager()
        let (state, report) = try global.run {
            try manager.mutate { added = try $0.addRules(rules, table: table, chain: chain, position: position) }
        }
        var json = Output.Report(report, dryRun: global.dryRun, backend: state.backend)
        json.rules = added.map(Output.RuleInfo.init)
        global.emit(text: added.map { "\($0.id)\t\($0.text)" }.joined(separator: "\n"), json: json)
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "policy", abstract: "Set a built-in chain's policy (ACCEPT or DROP).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var location: RuleLocation
    @Argument(help: "The built-in chain.") var chainName: String
    @Argument(help: "ACCEPT or DROP.") var policy: String

    func run() throws {
        let key = try guarded { try location.key() }
        try global.change("policy \(chainName) \(policy.uppercased())") { try $0.setPolicy(policy, chain: chainName, key) }
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
            let key = try guarded { try location.key() }
            try global.change("chain \(name)") { try $0.createChain(name, key) }
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: RuleLocation
        @Argument var name: String
        func run() throws {
            let key = try guarded { try location.key() }
            try global.change("deleted chain \(name)") { try $0.deleteChain(name, key) }
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
    static let configuration = CommandConfiguration(commandName: "ipset", abstract: "Manage docknfv's sets (hash:net, hash:ip, hash:ip,port): ipsets with iptables, nftables sets with nftables.",
                                                    subcommands: [Create.self, Add.self, Del.self, List.self, Destroy.self])

    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Flag(name: [.customShort("6")], help: "An IPv6 set.") var ipv6 = false
        @Argument var name: String
        @Argument(help: "hash:net, hash:ip or hash:ip,port.") var type: String
        @Argument(help: "Initial elements.") var entries: [String] = []
        func run() throws {
            guard let setType = SetType(rawValue: type) else { return try guarded { throw badValue("set type \(DisplayText.quoted(type)): expected hash:net, hash:ip or hash:ip,port") } }
            try global.change("set \(name)") { try $0.createSet(name, type: setType, family: ipv6 ? .v6 : .v4, entries: entries) }
        }
    }

    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var entries: [String]
        func run() throws {
            try global.change("added \(entries.count) element(s) to \(name)") { try $0.addElements(entries, to: name) }
        }
    }

    struct Del: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var entries: [String]
        func run() throws {
            try global.change("deleted \(entries.count) element(s) from \(name)") { try $0.deleteElements(entries, from: name) }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String?
        func run() throws {
            try guarded {
                let state = try global.store().load()
                let names = state.sets.keys.sorted().filter { name == nil || $0 == name }
                if let name, names.isEmpty { throw EngineError(.invalidInput, "no docknfv set \(DisplayText.quoted(name))") }
                let text = names.map { n in
                    let spec = state.sets[n]!
                    return "\(n) \(spec.type.rawValue) \(spec.family) (\(spec.entries.count) elements)\n" + spec.entries.map { "  \($0)" }.joined(separator: "\n")
                }.joined(separator: "\n")
                global.emit(text: text, json: Output.SetList(sets: names.map { n in
                    let spec = state.sets[n]!
                    return Output.SetInfo(name: n, type: spec.type.rawValue, family: spec.family.rawValue, entries: spec.entries.map(\.description))
                }))
            }
        }
    }

    struct Destroy: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        func run() throws {
            try global.change("destroyed \(name)") { try $0.destroySet(name) }
        }
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Add the rules of an iptables-save file (or -) as one atomic change.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.customShort("6")], help: "The file is ip6tables-save output.") var ipv6 = false
    @Argument(help: "File, or - for standard input.") var file: String

    func run() throws {
        try guarded {
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: file) else { throw EngineError(.invalidInput, "cannot read \(file)") }
                text = String(decoding: data, as: UTF8.self)
            }
            let family: IPFamily = ipv6 ? .v6 : .v4
            let save: SaveFile
            do { save = try SaveFileReader.read(text, family: family, parser: RuleParser(resolver: HostResolver.resolve)) } catch {
                throw EngineError(.invalidInput, "\(file): \(error)")
            }
            var count = 0
            let manager = try global.manager()
            let (state, report) = try global.run { try manager.mutate { count = try $0.merge(save, family: family) } }
            var json = Output.Report(report, dryRun: global.dryRun, backend: state.backend)
            json.imported = count
            global.emit(text: "imported \(count) rules", json: json)
        }
    }
}

struct SaveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "save", abstract: "Print the desired state (iptables-save format, or JSON).")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try guarded {
            let state = try global.store().load()
            let text = [IPFamily.v4, .v6].map { state.saveText(family: $0) }.filter { !$0.isEmpty }
                .enumerated().map { $0.offset == 0 ? $0.element : "# ipv6\n" + $0.element }.joined()
            global.emit(text: text.hasSuffix("\n") ? String(text.dropLast()) : text, json: Output.SaveInfo(state))
        }
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Re-apply the desired state to the kernel.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try guarded {
            let manager = try global.manager()
            let report = try global.run { try manager.apply() }
            global.emit(text: "committed: \(report.committed.map(\.description).joined(separator: ", ")); unchanged: \(report.unchanged.map(\.description).joined(separator: ", "))",
                        json: Output.Report(report, dryRun: global.dryRun))
        }
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Show what the kernel holds that differs from the desired state (exit 1 if anything, 2 on error).")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        var differs = false
        do {
            try guarded {
                let manager = try global.manager()
                let drift = try global.run { try manager.diff() }
                var lines: [String] = []
                for (key, d) in drift {
                    lines += d.missing.map { "\(key) missing: \($0)" }
                    lines += d.unexpected.map { "\(key) unexpected: \($0)" }
                }
                differs = !lines.isEmpty
                global.emit(text: lines.isEmpty ? "in sync" : lines.joined(separator: "\n"), json: Output.Diff(drift))
            }
        } catch is ExitCode {
            throw ExitCode(2) // like diff(1): 1 means "differs", so trouble is 2
        }
        if differs { throw ExitCode(1) }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Summarise the desired state, its sync with the kernel and the backend.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try guarded {
            let store = try global.store()
            let manager = try global.manager()
            let state = try store.load()
            let (selection, drift, nft, legacy) = try global.run {
                (try manager.selection(for: state), try manager.diff(), NFTablesInventory.tables(), XTablesInventory.holdsRules())
            }
            let inSync = drift.allSatisfy { $0.1.isEmpty }
            var lines = ["state: \(store.path)", "rules: \(state.rules.count) in \(Set(state.rules.map(\.key)).count) table(s), \(state.sets.count) set(s)",
                         "backend: \(selection.kind.rawValue) (\(selection.reason))", "kernel: \(inSync ? "in sync" : "differs (see docknfvctl diff)")"]
            let foreign = nft.filter { !$0.hasSuffix(" docknfv") }
            if selection.kind == .iptables && !foreign.isEmpty {
                lines.append("warning: nf_tables also holds tables here (\(foreign.joined(separator: ", "))); their rules are evaluated too and docknfv does not manage them")
            }
            if selection.kind == .nftables && legacy {
                lines.append("warning: legacy x_tables also holds rules here (iptables-legacy-save shows them); they are evaluated too and docknfv does not manage them")
            }
            global.emit(text: lines.joined(separator: "\n"),
                        json: Output.Status(stateFile: store.path, rules: state.rules.count, backend: selection.kind.rawValue, backendReason: selection.reason,
                                            inSync: inSync, nftablesTables: nft, legacyRules: legacy))
        }
    }
}

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Move docknfv's rules to the other backend (the new copy is in force before the old one goes).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "nftables or iptables.") var to: String
    func run() throws {
        guard let kind = BackendKind(rawValue: to) else { return try guarded { throw badValue("--to \(DisplayText.quoted(to)): expected nftables or iptables") } }
        try guarded {
            let manager = try global.manager()
            let (from, report) = try global.run { try manager.migrate(to: kind) }
            global.emit(text: from == kind ? "already on \(kind.rawValue)" : "moved from \(from.rawValue) to \(kind.rawValue)",
                        json: Output.Migration(from: from.rawValue, to: kind.rawValue, committed: report.committed.map(\.description), sets: report.sets))
        }
    }
}

/// Global options may come before the subcommand (`docknfvctl --netns P rule add …`); argument
/// parser wants them on the leaf command, so they are moved just before `--` (or to the end).
func relocatingGlobalOptions(_ arguments: [String]) -> [String] {
    let withValue: Set<String> = ["--netns", "--state-dir", "--backend"], flags: Set<String> = ["--json", "--dry-run"]
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

/// argument-parser removes each positional argument it consumes with a linear search, so a
/// command with N positional arguments costs O(N²) (60,000 set elements took minutes). The set
/// elements of `ipset create|add|del` beyond the first are therefore taken out before parsing
/// (`bulk`) and appended to the command's elements afterwards, in their order.
func splittingBulkElements(_ arguments: [String]) -> (arguments: [String], bulk: [String]) {
    guard arguments.count > 2, arguments[0] == "ipset", let fixed = ["create": 2, "add": 1, "del": 1][arguments[1]] else { return (arguments, []) }
    let withValue: Set<String> = ["--netns", "--state-dir", "--backend"]
    var kept = Array(arguments[..<2]), bulk: [String] = []
    var positionals = 0, index = 2
    while index < arguments.count {
        let argument = arguments[index]
        if argument == "--" { return (arguments, []) } // unusual; leave it all to argument-parser
        if argument.hasPrefix("-") {
            kept.append(argument)
            if withValue.contains(argument), index + 1 < arguments.count { kept.append(arguments[index + 1]); index += 1 }
        } else {
            positionals += 1
            if positionals > fixed + 1 { bulk.append(argument) } else { kept.append(argument) }
        }
        index += 1
    }
    return (kept, bulk)
}

/// `--position -1` would read as an unknown option `-1` ("Missing value for '--position'");
/// joined as `--position=-1` it reaches the command, which says where positions may be.
func joiningNegativePositions(_ arguments: [String]) -> [String] {
    var out: [String] = []
    out.reserveCapacity(arguments.count)
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        if argument == "--" { return out + arguments[index...] }
        if argument == "--position", index + 1 < arguments.count, arguments[index + 1].hasPrefix("-"), Int(arguments[index + 1]) != nil {
            out.append("--position=" + arguments[index + 1])
            index += 2
            continue
        }
        out.append(argument)
        index += 1
    }
    return out
}

let (arguments, bulkElements) = splittingBulkElements(relocatingGlobalOptions(joiningNegativePositions(Array(CommandLine.arguments.dropFirst()))))
do {
    var command = try DockNFVCtl.parseAsRoot(arguments)
    if var create = command as? IPSetCommand.Create { create.entries += bulkElements; command = create }
    if var add = command as? IPSetCommand.Add { add.entries += bulkElements; command = add }
    if var del = command as? IPSetCommand.Del { del.entries += bulkElements; command = del }
    try command.run()
} catch {
    DockNFVCtl.exit(withError: error)
}
