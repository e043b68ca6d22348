/// The contents of an `iptables-save` / `ip6tables-save` file.
public struct SaveFile: Sendable, Equatable {
    public struct Chain: Sendable, Equatable {
        public var name: String
        /// nil for a user chain (`-`).
        public var policy: String?
    }
    public struct TableSection: Sendable, Equatable {
        public var table: NetfilterTable
        public var chains: [Chain]
        /// (chain, rule) in file order.
        public var rules: [(chain: String, rule: Rule)]

        public static func == (a: TableSection, b: TableSection) -> Bool {
            a.table == b.table && a.chains == b.chains && a.rules.map(\.chain) == b.rules.map(\.chain)
                && a.rules.map(\.rule) == b.rules.map(\.rule)
        }
    }
    public var tables: [TableSection]
}

public struct SaveFileError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var text: String
    public var reason: String
    public var description: String { "line \(line) \"\(RuleParseError.clip(text, 200))\": \(reason)" }
}

/// Reads `iptables-save` output: `*table`, `:CHAIN POLICY [p:b]`, `-A CHAIN rule…`, `COMMIT`,
/// comments. Every rule goes through `RuleParser` and `RuleContext`; errors name the line.
/// The file is taken literally, as `iptables-restore` takes it: nothing is expanded (`$HOME` in a
/// comment stays `$HOME`). A rule marked for the other family (`-6` in an IPv4 file, either before
/// `-A` or among its options) is skipped, as `iptables-restore` skips it. Lines may end in CRLF.
public enum SaveFileReader {
    public static func read(_ text: String, family: IPFamily, parser: RuleParser? = nil) throws(SaveFileError) -> SaveFile {
        var parser = parser ?? RuleParser()
        parser.family = family
        parser.environment = nil
        parser.restoreSyntax = true
        var tables: [SaveFile.TableSection] = []
        var current: SaveFile.TableSection?
        for (offset, trimmed) in lines(text).enumerated() {
            let number = offset + 1
            var line = trimmed
            // `-4 -A …` / `-6 -A …`: for one family only.
            if line.hasPrefix("-4 ") || line.hasPrefix("-6 ") {
                if (line.hasPrefix("-4 ") ? IPFamily.v4 : .v6) != family { continue }
                line = String(line.dropFirst(3)).trimming(" \t")
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            func fail(_ reason: String) -> SaveFileError { SaveFileError(line: number, text: line, reason: reason) }
            if line.hasPrefix("*") {
                guard current == nil else { throw fail("table starts before the previous one's COMMIT") }
                guard let table = NetfilterTable(rawValue: String(line.dropFirst())) else { throw fail("unknown table") }
                current = SaveFile.TableSection(table: table, chains: [], rules: [])
            } else if line == "COMMIT" {
                guard let section = current else { throw fail("COMMIT outside a table") }
                tables.append(section)
                current = nil
            } else if line.hasPrefix(":") {
                guard current != nil else { throw fail("chain outside a table") }
                let parts = line.dropFirst().split(separator: " ")
                guard parts.count >= 2 else { throw fail("expected :CHAIN POLICY") }
                let name = String(parts[0])
                let policy = String(parts[1])
                let builtin = current!.table.builtinChains.contains(name)
                if builtin {
                    guard ["ACCEPT", "DROP"].contains(policy) else { throw fail("policy must be ACCEPT or DROP") }
                } else {
                    guard policy == "-" else { throw fail("a user chain has no policy") }
                    guard ChainNames.isValidUserChain(name) else { throw fail("chain name \(name) is invalid or too long") }
                }
                current!.chains.append(.init(name: name, policy: builtin ? policy : nil))
            } else if line.hasPrefix("-A ") {
                guard current != nil else { throw fail("rule outside a table") }
                let rest = line.utf8.dropFirst(3)
                guard let space = rest.firstIndex(of: UInt8(ascii: " ")) else { throw fail("rule without options") }
                let chain = String(decoding: rest[..<space], as: UTF8.self)
                // Built-in chains need no `:CHAIN` line (iptables-restore does not ask for one either).
                guard current!.table.builtinChains.contains(chain) || current!.chains.contains(where: { $0.name == chain }) else {
                    throw fail("chain \(chain) was not declared")
                }
                let rules: [Rule]
                do { rules = try parser.parse(String(decoding: rest[rest.index(after: space)...], as: UTF8.self)) } catch {
                    throw fail(error.detail)
                }
                for rule in rules {
                    do { try RuleContext.validate(rule, table: current!.table, chain: chain) } catch { throw fail(error.description) }
                }
                for rule in rules { current!.rules.append((chain, rule)) }
            } else {
                throw fail("unexpected line (only *table, :chain, -A and COMMIT are understood)")
            }
        }
        if current != nil { throw SaveFileError(line: 0, text: "", reason: "the last table has no COMMIT") }
        return SaveFile(tables: tables)
    }

    /// The file's lines without their leading and trailing spaces, tabs and carriage returns.
    /// Split on the byte, not on Characters ("\r\n" is one Character and would not split), over
    /// the bytes in place: a save file has thousands of lines.
    static func lines(_ text: String) -> [String] {
        var text = text
        return text.withUTF8 { bytes in
            func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") }
            var lines: [String] = []
            var start = 0
            while start <= bytes.count {
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
                var first = start, last = end
                while first < last, isSpace(bytes[first]) { first += 1 }
                while last > first, isSpace(bytes[last - 1]) { last -= 1 }
                lines.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[first..<last]), as: UTF8.self))
                start = end + 1
            }
            return lines
        }
    }
}
