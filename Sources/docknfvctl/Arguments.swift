#if canImport(Glibc)
import Glibc
#endif

/// docknfvctl's command line, parsed by hand: a generic argument parser and its reflection would
/// cost every short-lived invocation more start-up time than the work itself.
struct Arguments {
    /// Options that take a value, by long name (`--table filter` or `--table=filter`).
    var values: [String: String] = [:]
    /// Flags given (`--json`, `-4`).
    var flags: Set<String> = []
    /// Words that are not options, after the subcommand path.
    var positionals: [String] = []
    /// Everything after `--` (a rule).
    var rest: [String] = []
    var afterSeparator = false
    var help = false

    func value(_ name: String) -> String? { values[name] }
    func flag(_ name: String) -> Bool { flags.contains(name) }
}

/// A syntax error: printed with the command's usage, exit status 64 (EX_USAGE).
struct UsageError: Error {
    var message: String
    /// The subcommand words found before the error (for its usage line).
    var path: [String] = []
    init(_ message: String, path: [String] = []) { self.message = message; self.path = path }
}

/// One leaf command: its words, what it accepts and what it does.
struct Command {
    var path: [String]
    var abstract: String
    /// Options taking a value: name → help.
    var options: [(String, String)] = []
    /// Flags: name → help.
    var flags: [(String, String)] = []
    /// Positional arguments: name and help; a trailing "…" in the name takes any number.
    var positionals: [(String, String)] = []
    /// Whether a rule follows `--`.
    var takesRule = false
    var run: (Arguments) throws -> Void

    var usage: String {
        var words = ["docknfvctl"] + path
        if !options.isEmpty || !flags.isEmpty { words.append("[options]") }
        words += positionals.map { $0.0.hasSuffix("…") ? "[\($0.0)]" : "<\($0.0)>" }
        if takesRule { words.append("-- RULE…") }
        return words.joined(separator: " ")
    }

    var help: String {
        var lines = ["OVERVIEW: \(abstract)", "", "USAGE: \(usage)"]
        if !positionals.isEmpty {
            lines += ["", "ARGUMENTS:"] + positionals.map { "  \($0.0.padding(22)) \($0.1)" }
        }
        lines += ["", "OPTIONS:"]
        lines += options.map { "  --\($0.0) <value>".padding(26) + " " + $0.1 }
        lines += flags.map { ($0.0.count == 1 ? "  -\($0.0)" : "  --\($0.0)").padding(26) + " " + $0.1 }
        lines.append("  -h, --help".padding(26) + " Show help.")
        return lines.joined(separator: "\n")
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

enum Parser {
    /// Finds the command for `words` and parses its options. Options may come before the
    /// subcommand words too (`docknfvctl --netns P rule add …`).
    static func parse(_ words: [String], commands: [Command]) throws(UsageError) -> (Command?, Arguments, [String]) {
        var arguments = Arguments()
        var path: [String] = []
        var index = 0
        var command: Command?
        while index < words.count {
            let word = words[index]
            index += 1
            if arguments.afterSeparator { arguments.rest.append(word); continue }
            if word == "--" { arguments.afterSeparator = true; continue }
            if word == "-h" || word == "--help" { arguments.help = true; continue }
            if command == nil, !word.hasPrefix("-"), commands.contains(where: { $0.path.starts(with: path + [word]) }) {
                path.append(word)
                command = commands.first { $0.path == path }
                continue
            }
            if word.hasPrefix("-") && word.count > 1 {
                let long = word.hasPrefix("--")
                var name = String(word.dropFirst(long ? 2 : 1))
                var inline: String?
                if long, let equals = name.firstIndex(of: "=") { inline = String(name[name.index(after: equals)...]); name = String(name[..<equals]) }
                let accepted = Self.accepted(command, all: commands)
                if accepted.options.contains(name) {
                    if arguments.values[name] != nil { throw UsageError("--\(name) given twice", path: path) }
                    if let inline { arguments.values[name] = inline; continue }
                    guard index < words.count else { throw UsageError("--\(name) needs a value", path: path) }
                    arguments.values[name] = words[index]
                    index += 1
                } else if accepted.flags.contains(name) && inline == nil {
                    arguments.flags.insert(name)
                } else {
                    throw UsageError("unknown option \(word)", path: path)
                }
                continue
            }
            arguments.positionals.append(word)
        }
        return (command, arguments, path)
    }

    /// Options and flags a command (plus the global ones) accepts; before the subcommand is
    /// known, any option some command has (checked against the command once it is known).
    static func accepted(_ command: Command?, all commands: [Command]) -> (options: Set<String>, flags: Set<String>) {
        var options = Set(globalOptions.map(\.0)), flags = Set(globalFlags.map(\.0))
        for candidate in command.map({ [$0] }) ?? commands {
            options.formUnion(candidate.options.map(\.0))
            flags.formUnion(candidate.flags.map(\.0))
        }
        return (options, flags)
    }

    static let globalOptions: [(String, String)] = [
        ("netns", "Network namespace to act in (a path such as /run/netns/NAME or /proc/PID/ns/net)."),
        ("state-dir", "State directory (default $DOCKNFV_STATE_DIR, /var/lib/docknfv, or one per namespace with --netns)."),
        ("backend", "auto (default: what docknfv's state uses, else the one kind of rules the namespace holds, else the system's iptables variant), nftables or iptables; also $DOCKNFV_BACKEND."),
    ]
    static let globalFlags: [(String, String)] = [("json", "Print JSON."), ("dry-run", "Validate and show what would change; change nothing.")]

    /// Checks the parsed words against the command found.
    static func check(_ command: Command, _ arguments: Arguments) throws(UsageError) {
        let accepted = Self.accepted(command, all: [])
        for name in arguments.values.keys where !accepted.options.contains(name) { throw UsageError("unknown option --\(name) for \(command.path.joined(separator: " "))") }
        for name in arguments.flags where !accepted.flags.contains(name) { throw UsageError("unknown option -\(name.count == 1 ? "" : "-")\(name) for \(command.path.joined(separator: " "))") }
        let variadic = command.positionals.last?.0.hasSuffix("…") ?? false
        let required = command.positionals.filter { !$0.0.hasSuffix("…") && !$0.0.hasSuffix("?") }.count
        if arguments.positionals.count < required { throw UsageError("missing <\(command.positionals[arguments.positionals.count].0)>") }
        if !variadic, arguments.positionals.count > command.positionals.count {
            throw UsageError("unexpected argument \(arguments.positionals[command.positionals.count])")
        }
        if !command.takesRule, !arguments.rest.isEmpty { throw UsageError("\(command.path.joined(separator: " ")) takes no rule after --") }
    }
}

/// Process environment and standard streams without Foundation.
enum Process {
    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    static func printError(_ text: String) {
        let line = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// Writes bytes to standard output, after whatever `print` buffered.
    static func writeStandardOutput(_ bytes: [UInt8]) {
        fflush(nil) // every stream: what `print` buffered goes first
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            written += count
        }
    }

    static func readStandardInput() -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(0, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return out }
            out += buffer[..<count]
        }
    }
}
