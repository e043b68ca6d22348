import NetNS
import NetlinkRelease
import RuleEngine
import RuleState
import ShortProcess
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

// docknfvctl: argument parsing and printing only; everything else is RuleState's library API.

// MARK: Options shared by every command

struct Context {
    var arguments: Arguments

    var netns: String? { arguments.value("netns") }
    var json: Bool { arguments.flag("json") }
    var dryRun: Bool { arguments.flag("dry-run") }

    func store() throws -> StateStore {
        if let dir = arguments.value("state-dir") { return StateStore(directory: dir) }
        if let env = Process.environment("DOCKNFV_STATE_DIR") { return StateStore(directory: env) }
        if let netns { return StateStore(directory: "/var/lib/docknfv/netns/" + (try NamespaceKey.of(netns))) }
        return StateStore(directory: "/var/lib/docknfv")
    }

    func manager() throws -> RuleManager {
        let choice = try BackendChoice(parsing: arguments.value("backend") ?? Process.environment("DOCKNFV_BACKEND") ?? "auto")
        return RuleManager(store: try store(), backend: choice, dryRun: dryRun)
    }

    /// Runs `body` inside the namespace when --netns is given.
    func run<T>(_ body: () throws -> T) throws -> T {
        guard let netns else { return try body() }
        return try NetworkNamespace.run(path: netns, body)
    }

    /// The shape of every changing command: inside the namespace, change the desired state and
    /// apply it, then print `message` or, with --json, what was done.
    func change(_ message: String, _ body: (inout DesiredState) throws -> Void) throws {
        let manager = try manager()
        let (state, report) = try run { try manager.mutate(body) }
        emit(message, Output.Report(report, dryRun: dryRun, backend: state.backend))
    }

    func emit<T: Encodable>(_ text: @autoclosure () -> String, _ value: @autoclosure () -> T) {
        if json {
            print(String(decoding: ((try? JSON.encode(value())) ?? .null).rendered(), as: UTF8.self), terminator: "")
        } else {
            let text = text()
            if !text.isEmpty { print(text) }
        }
    }

    // Rule location options.
    // A bad value is a domain error (exit 65, one line); only argument syntax is a usage error.
    func table() throws -> NetfilterTable {
        let name = arguments.value("table") ?? "filter"
        guard let table = NetfilterTable(rawValue: name) else { throw bad("--table", name, "expected filter, nat, mangle or raw") }
        return table
    }

    func bad(_ option: String, _ value: String, _ reason: String) -> EngineError {
        EngineError(.invalidInput, "\(option) \(DisplayText.quoted(value)): \(reason)")
    }

    func family() throws -> IPFamily? {
        if arguments.flag("4") && arguments.flag("6") { throw UsageError("-4 and -6 together") }
        if arguments.flag("4") { return .v4 }
        if arguments.flag("6") { return .v6 }
        guard let name = arguments.value("family") else { return nil }
        switch name.lowercased() {
        case "ipv4", "4", "inet": return .v4
        case "ipv6", "6", "inet6": return .v6
        default: throw bad("--family", name, "expected ipv4 or ipv6")
        }
    }

    func key() throws -> TableKey { TableKey(try family() ?? .v4, try table()) }

    func chain(in table: NetfilterTable) throws -> String {
        guard let name = arguments.value("chain") else { throw UsageError("--chain is required") }
        if table.builtinChains.contains(name) || ChainNames.isValidUserChain(name) { return name }
        throw bad("--chain", name, "not a built-in chain of \(table.rawValue) and not a valid chain name (letters, digits, -_., at most \(ChainNames.maxKernelLength - ChainNames.prefix.count) characters)")
    }

    func integer(_ name: String) throws(UsageError) -> Int? {
        guard let text = arguments.value(name) else { return nil }
        guard let value = Int(text) else { throw UsageError("--\(name) \(text): expected a number") }
        return value
    }

    func positional(_ index: Int) -> String? { index < arguments.positionals.count ? arguments.positionals[index] : nil }
}

/// The state directory of a namespace given by path: its name for /run/netns/NAME, else the
/// namespace's own identity (device and inode), so /proc/A/ns/net and /proc/B/ns/net never share a file.
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

func parseRule(_ words: [String], family: IPFamily?) throws -> [Rule] {
    guard !words.isEmpty else { throw EngineError(.invalidInput, "no rule given: put it after --, e.g. -- -p tcp --dport 80 -j ACCEPT") }
    let environment = Dictionary(uniqueKeysWithValues: Swift.CommandLine.environment)
    do { return try RuleParser(family: family, environment: environment, resolver: HostResolver.resolve).parse(tokens: words) } catch {
        throw EngineError(.invalidInput, error.description)
    }
}

extension Swift.CommandLine {
    /// The environment as (name, value) pairs, for `$VAR` in rules given on the command line.
    static var environment: [(String, String)] {
        var out: [(String, String)] = []
        var seen = Set<String>()
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "="), seen.insert(String(text[..<equals])).inserted {
                out.append((String(text[..<equals]), String(text[text.index(after: equals)...])))
            }
            pointer += 1
        }
        return out
    }
}

/// Exit statuses for domain errors (argument syntax errors are 64, with the usage).
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

// MARK: Commands

let location: [(String, String)] = [
    ("table", "Table: filter (default), nat, mangle or raw."),
    ("chain", "A built-in chain of the table, or a chain made with `chain create`."),
    ("family", "ipv4 or ipv6 (default: from the rule, else ipv4)."),
]
let familyFlags: [(String, String)] = [("4", "IPv4."), ("6", "IPv6.")]

func addRules(_ context: Context, table: NetfilterTable, chain: String, family: IPFamily?, words: [String], position: Int?) throws {
    let rules = try parseRule(words, family: family)
    var added: [StoredRule] = []
    let manager = try context.manager()
    let (backend, report): (BackendKind?, ApplyReport) = try context.run {
        if position == nil {
            let result = try manager.append(rules, table: table, chain: chain)
            added = result.added
            return (result.backend, result.report)
        }
        let (state, report) = try manager.mutate { added = try $0.addRules(rules, table: table, chain: chain, position: position) }
        return (state.backend, report)
    }
    var json = Output.Report(report, dryRun: context.dryRun, backend: backend)
    json.rules = added.map(Output.RuleInfo.init)
    context.emit(added.map { "\($0.id)\t\($0.text)" }.joined(separator: "\n"), json)
}

func addLocatedRules(_ context: Context, position: Int?) throws {
    let table = try context.table()
    try addRules(context, table: table, chain: try context.chain(in: table), family: try context.family(), words: context.arguments.rest, position: position)
}

let commands: [Command] = [
    Command(path: ["rule", "add"], abstract: "Append a rule (docknfvctl rule add --chain FORWARD -- -p tcp --dport 80 -j ACCEPT).",
            options: location + [("position", "1-based position in the chain (default: the end).")], flags: familyFlags, takesRule: true) { arguments in
        let context = Context(arguments: arguments)
        try addLocatedRules(context, position: try context.integer("position"))
    },
    Command(path: ["rule", "insert"], abstract: "Insert a rule at a position (default 1).",
            options: location + [("position", "1-based position in the chain (default 1).")], flags: familyFlags, takesRule: true) { arguments in
        let context = Context(arguments: arguments)
        try addLocatedRules(context, position: try context.integer("position") ?? 1)
    },
    Command(path: ["rule", "del"], abstract: "Delete a rule by id, or by its text in a chain.",
            options: location + [("id", "The rule's id (see rule list).")], flags: familyFlags, takesRule: true) { arguments in
        let context = Context(arguments: arguments)
        let table = try context.table()
        if let id = arguments.value("id") {
            try context.change("deleted") { try $0.deleteRule(id: id) }
        } else {
            guard arguments.value("chain") != nil else { throw UsageError("give --id, or --chain and the rule after --") }
            let chain = try context.chain(in: table)
            let wanted = try parseRule(arguments.rest, family: try context.family())
            try context.change("deleted") { try $0.deleteRules(wanted, table: table, chain: chain) }
        }
    },
    Command(path: ["rule", "list"], abstract: "List docknfv's rules with their ids.",
            options: [("table", "Only this table."), ("chain", "Only this chain.")]) { arguments in
        let context = Context(arguments: arguments)
        let state = try context.store().load()
        let table = arguments.value("table"), chain = arguments.value("chain")
        let rules = state.rules.filter { (table == nil || $0.table.rawValue == table) && (chain == nil || $0.chain == chain) }
        if context.json { context.emit("", Output.RuleList(rules: rules.map(Output.RuleInfo.init))); return }
        // One line per rule, tab-separated, built as bytes (thousands of rules are listed at once).
        var out: [UInt8] = []
        out.reserveCapacity(rules.count * 96)
        for rule in rules {
            for (index, field) in [rule.id, rule.family.rawValue, rule.table.rawValue, rule.chain, rule.text].enumerated() {
                if index > 0 { out.append(0x09) }
                out.append(contentsOf: field.utf8)
            }
            out.append(0x0a)
        }
        Process.writeStandardOutput(out)
    },
    Command(path: ["rule", "flush"], abstract: "Delete all of docknfv's rules, or those of one chain / table.",
            options: [("table", "Only this table."), ("chain", "Only this chain.")]) { arguments in
        let context = Context(arguments: arguments)
        let table = try arguments.value("table").map { _ in try context.table() }
        try context.change("flushed") { try $0.flush(table: table, chain: arguments.value("chain")) }
    },
    Command(path: ["policy"], abstract: "Set a built-in chain's policy (ACCEPT or DROP).", options: [location[0], location[2]], flags: familyFlags,
            positionals: [("chain", "The built-in chain."), ("policy", "ACCEPT or DROP.")]) { arguments in
        let context = Context(arguments: arguments)
        let key = try context.key(), chain = arguments.positionals[0], policy = arguments.positionals[1]
        try context.change("policy \(chain) \(policy.uppercased())") { try $0.setPolicy(policy, chain: chain, key) }
    },
    Command(path: ["chain", "create"], abstract: "Create one of docknfv's own chains.", options: [location[0], location[2]], flags: familyFlags,
            positionals: [("name", "The chain's name.")]) { arguments in
        let context = Context(arguments: arguments)
        let key = try context.key(), name = arguments.positionals[0]
        try context.change("chain \(name)") { try $0.createChain(name, key) }
    },
    Command(path: ["chain", "delete"], abstract: "Delete one of docknfv's own chains (refused while a rule jumps to it).",
            options: [location[0], location[2]], flags: familyFlags, positionals: [("name", "The chain's name.")]) { arguments in
        let context = Context(arguments: arguments)
        let key = try context.key(), name = arguments.positionals[0]
        try context.change("deleted chain \(name)") { try $0.deleteChain(name, key) }
    },
    Command(path: ["nat", "masquerade"], abstract: "Masquerade traffic leaving an interface.",
            options: [("out-interface", "Interface the traffic leaves by."), ("source", "Only from this source CIDR.")]) { arguments in
        guard let out = arguments.value("out-interface") else { throw UsageError("--out-interface is required") }
        var words = ["-o", out]
        if let source = arguments.value("source") { words = ["-s", source] + words }
        try addRules(Context(arguments: arguments), table: .nat, chain: "POSTROUTING", family: nil, words: words + ["-j", "MASQUERADE"], position: nil)
    },
    Command(path: ["nat", "dnat"], abstract: "Forward a port to another address (port mapping).",
            options: [("proto", "tcp (default) or udp."), ("port", "The port to map."), ("to", "ADDRESS[:PORT] to send it to ([v6]:PORT for IPv6)."),
                      ("in-interface", "Only traffic arriving here."), ("destination", "Only traffic to this address.")]) { arguments in
        guard let port = arguments.value("port"), let to = arguments.value("to") else { throw UsageError("--port and --to are required") }
        var words = ["-p", arguments.value("proto") ?? "tcp"]
        if let destination = arguments.value("destination") { words += ["-d", destination] }
        if let inInterface = arguments.value("in-interface") { words += ["-i", inInterface] }
        try addRules(Context(arguments: arguments), table: .nat, chain: "PREROUTING", family: nil,
                     words: words + ["--dport", port, "-j", "DNAT", "--to-destination", to], position: nil)
    },
    Command(path: ["nat", "snat"], abstract: "Rewrite the source address of traffic.",
            options: [("source", "Source CIDR to rewrite."), ("to", "The new source address."), ("out-interface", "Only traffic leaving here.")]) { arguments in
        guard let source = arguments.value("source"), let to = arguments.value("to") else { throw UsageError("--source and --to are required") }
        var words = ["-s", source]
        if let out = arguments.value("out-interface") { words += ["-o", out] }
        try addRules(Context(arguments: arguments), table: .nat, chain: "POSTROUTING", family: nil, words: words + ["-j", "SNAT", "--to-source", to], position: nil)
    },
    Command(path: ["ipset", "create"], abstract: "Create a set (an ipset with iptables, an nftables set with nftables).", flags: [("6", "An IPv6 set.")],
            positionals: [("name", "The set's name."), ("type", "hash:net, hash:ip, hash:ip,port or hash:ip,mark."), ("element…", "Initial elements.")]) { arguments in
        let context = Context(arguments: arguments)
        let name = arguments.positionals[0], typeName = arguments.positionals[1]
        guard let type = SetType(rawValue: typeName) else {
            throw EngineError(.invalidInput, "set type \(DisplayText.quoted(typeName)): expected hash:net, hash:ip, hash:ip,port or hash:ip,mark")
        }
        try context.change("set \(name)") { try $0.createSet(name, type: type, family: arguments.flag("6") ? .v6 : .v4, entries: Array(arguments.positionals.dropFirst(2))) }
    },
    Command(path: ["ipset", "add"], abstract: "Add elements to a set.", positionals: [("name", "The set."), ("element…", "Elements.")]) { arguments in
        let name = arguments.positionals[0], entries = Array(arguments.positionals.dropFirst())
        try Context(arguments: arguments).change("added \(entries.count) element(s) to \(name)") { try $0.addElements(entries, to: name) }
    },
    Command(path: ["ipset", "del"], abstract: "Delete elements from a set.", positionals: [("name", "The set."), ("element…", "Elements.")]) { arguments in
        let name = arguments.positionals[0], entries = Array(arguments.positionals.dropFirst())
        try Context(arguments: arguments).change("deleted \(entries.count) element(s) from \(name)") { try $0.deleteElements(entries, from: name) }
    },
    Command(path: ["ipset", "list"], abstract: "List docknfv's sets.", positionals: [("name…", "Only this set.")]) { arguments in
        let context = Context(arguments: arguments)
        let state = try context.store().load()
        let only = context.positional(0)
        let names = state.sets.keys.sorted().filter { only == nil || $0 == only }
        if let only, names.isEmpty { throw EngineError(.invalidInput, "no docknfv set \(DisplayText.quoted(only))") }
        let text = names.map { name in
            let spec = state.sets[name]!
            return "\(name) \(spec.type.rawValue) \(spec.family) (\(spec.entries.count) elements)\n" + spec.entries.map { "  \($0)" }.joined(separator: "\n")
        }.joined(separator: "\n")
        context.emit(text, Output.SetList(sets: names.map { name in
            let spec = state.sets[name]!
            return Output.SetInfo(name: name, type: spec.type.rawValue, family: spec.family.rawValue, entries: spec.entries.map(\.description))
        }))
    },
    Command(path: ["ipset", "destroy"], abstract: "Destroy a set (refused while a rule matches on it).", positionals: [("name", "The set.")]) { arguments in
        let name = arguments.positionals[0]
        try Context(arguments: arguments).change("destroyed \(name)") { try $0.destroySet(name) }
    },
    Command(path: ["import"], abstract: "Add the rules of an iptables-save file (or -) as one atomic change.",
            flags: [("6", "The file is ip6tables-save output.")], positionals: [("file", "File, or - for standard input.")]) { arguments in
        let context = Context(arguments: arguments)
        let file = arguments.positionals[0]
        let bytes: [UInt8]
        if file == "-" { bytes = Process.readStandardInput() } else {
            guard let read = try? AtomicFile.read(file) else { throw EngineError(.invalidInput, "cannot read \(file)") }
            bytes = read
        }
        let family: IPFamily = arguments.flag("6") ? .v6 : .v4
        let save: SaveFile
        do { save = try SaveFileReader.read(String(decoding: bytes, as: UTF8.self), family: family, parser: RuleParser(resolver: HostResolver.resolve)) } catch {
            throw EngineError(.invalidInput, "\(file): \(error)")
        }
        var count = 0
        let manager = try context.manager()
        let (state, report) = try context.run { try manager.mutate { count = try $0.merge(save, family: family) } }
        var json = Output.Report(report, dryRun: context.dryRun, backend: state.backend)
        json.imported = count
        context.emit("imported \(count) rules", json)
    },
    Command(path: ["save"], abstract: "Print the desired state (iptables-save format, or JSON).") { arguments in
        let context = Context(arguments: arguments)
        let state = try context.store().load()
        let text = [IPFamily.v4, .v6].map { state.saveText(family: $0) }.filter { !$0.isEmpty }
            .enumerated().map { $0.offset == 0 ? $0.element : "# ipv6\n" + $0.element }.joined()
        context.emit(text.hasSuffix("\n") ? String(text.dropLast()) : text, Output.SaveInfo(state))
    },
    Command(path: ["apply"], abstract: "Re-apply the desired state to the kernel.") { arguments in
        let context = Context(arguments: arguments)
        let manager = try context.manager()
        let report = try context.run { try manager.apply() }
        context.emit("committed: \(report.committed.map(\.description).joined(separator: ", ")); unchanged: \(report.unchanged.map(\.description).joined(separator: ", "))",
                     Output.Report(report, dryRun: context.dryRun))
    },
    Command(path: ["diff"], abstract: "Show what the kernel holds that differs from the desired state (exit 1 if anything, 2 on error).") { arguments in
        let context = Context(arguments: arguments)
        let manager = try context.manager()
        let drift: [(TableKey, TableDrift)]
        do { drift = try context.run { try manager.diff() } } catch { throw DiffTrouble(error: error) }
        var lines: [String] = []
        for (key, d) in drift {
            lines += d.missing.map { "\(key) missing: \($0)" }
            lines += d.unexpected.map { "\(key) unexpected: \($0)" }
        }
        context.emit(lines.isEmpty ? "in sync" : lines.joined(separator: "\n"), Output.Diff(drift))
        if !lines.isEmpty { exit(1) }
    },
    Command(path: ["status"], abstract: "Summarise the desired state, its sync with the kernel and the backend.") { arguments in
        let context = Context(arguments: arguments)
        let store = try context.store()
        let manager = try context.manager()
        let state = try store.load()
        let (selection, drift, nft, legacy) = try context.run {
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
        context.emit(lines.joined(separator: "\n"),
                     Output.Status(stateFile: store.path, rules: state.rules.count, backend: selection.kind.rawValue, backendReason: selection.reason,
                                   inSync: inSync, nftablesTables: nft, legacyRules: legacy))
    },
    Command(path: ["migrate"], abstract: "Move docknfv's rules to the other backend (the new copy is in force before the old one goes).",
            options: [("to", "nftables or iptables.")]) { arguments in
        let context = Context(arguments: arguments)
        guard let to = arguments.value("to") else { throw UsageError("--to is required") }
        guard let kind = BackendKind(rawValue: to) else { throw context.bad("--to", to, "expected nftables or iptables") }
        let manager = try context.manager()
        let (from, report) = try context.run { try manager.migrate(to: kind) }
        context.emit(from == kind ? "already on \(kind.rawValue)" : "moved from \(from.rawValue) to \(kind.rawValue)",
                     Output.Migration(from: from.rawValue, to: kind.rawValue, committed: report.committed.map(\.description), sets: report.sets))
    },
]

/// An error of `diff` itself (exit 2: 1 means "differs", as for diff(1)).
struct DiffTrouble: Error { var error: any Error }

let overview = """
    OVERVIEW: Manage docknfv's firewall and NAT rules at runtime (inside a VNF, or from the host with --netns).

    docknfv keeps a desired state (rules.json in the state directory) and makes the kernel hold it through one of
    two backends: nftables (its own tables ip/ip6 docknfv, changed in one atomic batch) or legacy x_tables through
    libiptc (its own chains DNFV-<chain>, one commit per table). It never touches rules it does not own.

    Exit status: 0 done, 1 kernel or file error, 64 bad arguments, 65 bad rule or value, 75 busy (try again
    later), 77 not permitted; diff: 1 differs, 2 error.

    USAGE: docknfvctl [--netns PATH] [--state-dir DIR] [--backend auto|nftables|iptables] [--json] [--dry-run] <command>
    """

@MainActor func helpText(for path: [String]) -> String {
    let matching = commands.filter { $0.path.starts(with: path) }
    if matching.count == 1, let command = matching.first, command.path == path {
        return command.help + "\n" + (Parser.globalOptions.map { "  --\($0.0) <value>".padding(26) + " " + $0.1 }
            + Parser.globalFlags.map { "  --\($0.0)".padding(26) + " " + $0.1 }).joined(separator: "\n")
    }
    let header = path.isEmpty ? overview : "USAGE: docknfvctl \(path.joined(separator: " ")) <subcommand>"
    return header + "\n\nCOMMANDS:\n" + matching.map { "  \($0.path.joined(separator: " "))".padding(22) + " " + $0.abstract }.joined(separator: "\n")
}

@MainActor func main() -> Int32 {
    ShortProcess.begin()
    let words = Array(Swift.CommandLine.arguments.dropFirst())
    let command: Command?, arguments: Arguments, path: [String]
    do { (command, arguments, path) = try Parser.parse(words, commands: commands) } catch {
        let usage = commands.first { $0.path == error.path }?.usage ?? "docknfvctl [options] <command> (see docknfvctl --help)"
        Process.printError("docknfvctl: error: \(error.message)\nUsage: \(usage)")
        return 64
    }
    if arguments.help || command == nil {
        print(helpText(for: path))
        return arguments.help ? 0 : (words.isEmpty ? 0 : 64)
    }
    do {
        try Parser.check(command!, arguments)
        // The process ends after the command: a close that would wait for nf_tables to free
        // what the command removed happens in a detached process instead (NetlinkRelease).
        try NetlinkRelease.together(handingOff: true) { try command!.run(arguments) }
        return 0
    } catch let error as UsageError {
        Process.printError("docknfvctl: error: \(error.message)\nUsage: \(command!.usage)")
        return 64
    } catch let trouble as DiffTrouble {
        Process.printError("docknfvctl: error: \((trouble.error as? EngineError)?.message ?? "\(trouble.error)")")
        return 2
    } catch {
        let engine = error as? EngineError ?? EngineError(.kernel, "\(error)")
        Process.printError("docknfvctl: error: \(engine.message)")
        return ExitStatus.of(engine.code)
    }
}

exit(main())
