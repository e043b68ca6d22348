#if canImport(Glibc)
import Glibc
#endif

/// A rule that could not be parsed. Names the token (1-based) and the rule text.
public struct RuleParseError: Error, Equatable, CustomStringConvertible {
    public var rule: String
    public var token: String?
    public var position: Int?
    public var reason: String

    public var description: String { "rule \"\(Self.clip(rule, 200))\": " + detail }

    /// The token and the reason, without the rule (for messages that show the rule already).
    public var detail: String {
        if let token, let position { return "token \(position) \"\(Self.clip(token, 80))\": \(Self.clip(reason, 300))" }
        return Self.clip(reason, 300)
    }

    /// Echoed input is cut short: a 100 KB token must not come back as 100 KB of message.
    static func clip(_ text: String, _ limit: Int) -> String {
        let bytes = text.utf8.count
        guard bytes > limit else { return text }
        return String(decoding: text.utf8.prefix(limit), as: UTF8.self) + "…(\(bytes) bytes)"
    }
}

/// Parses the iptables rule syntax (`-p tcp --dport 80 -j ACCEPT`, `-m multiport --dports 80,443`,
/// `-m set --match-set NAME src`, `! -s 10.0.0.0/8`, `-j DNAT --to-destination …`) as used by
/// operators, firewallnetns-style configs and `iptables-save`.
public struct RuleParser {
    public var family: IPFamily?
    /// `$VAR` / `${VAR}` values; nil = no expansion (a `$` is then literal).
    public var environment: [String: String]?
    /// Resolves a hostname in `-s` / `-d` to addresses (one rule per address). nil = hostnames are errors.
    public var resolver: ((String, IPFamily?) -> [IPAddress])?
    /// Reads rules as `iptables-restore` does: only double quotes group, and a rule marked `-4` in
    /// an IPv6 file (or `-6` in an IPv4 one) is skipped (parses to no rules) instead of refused.
    /// Also how the state file's rule texts are read: they are what `save` prints.
    public var restoreSyntax = false

    public init(family: IPFamily? = nil, environment: [String: String]? = nil,
                resolver: ((String, IPFamily?) -> [IPAddress])? = nil) {
        self.family = family
        self.environment = environment
        self.resolver = resolver
    }

    /// Parses one rule. Hostnames may turn it into several rules (one per address).
    public func parse(_ text: String) throws(RuleParseError) -> [Rule] {
        // A restore file knows only double quotes (`iptables-restore`); a command line knows both.
        var tokens = try Tokenizer.split(text, rule: text, singleQuotes: !restoreSyntax)
        try Tokenizer.refuseControlCharacters(tokens, rule: text)
        if let environment {
            for index in tokens.indices {
                tokens[index] = try expand(tokens[index], environment: environment, rule: text, position: index + 1)
            }
        }
        if restoreSyntax, let at = Self.otherFamilyFlag(tokens, family) {
            try Self.checkBeforeSkipping(tokens[..<at], rule: text)
            return []
        }
        var run = RuleParse(text: text, tokens: tokens, family: family, resolver: resolver)
        return try run.run()
    }

    /// Parses tokens already split (as given on a command line after `--`).
    public func parse(tokens: [String]) throws(RuleParseError) -> [Rule] {
        let text = Tokenizer.joinWords(tokens.map(Tokenizer.quoteIfNeeded))
        try Tokenizer.refuseControlCharacters(tokens, rule: text)
        var tokens = tokens
        if let environment {
            for index in tokens.indices {
                tokens[index] = try expand(tokens[index], environment: environment, rule: text, position: index + 1)
            }
        }
        if restoreSyntax, let at = Self.otherFamilyFlag(tokens, family) {
            try Self.checkBeforeSkipping(tokens[..<at], rule: text)
            return []
        }
        var run = RuleParse(text: text, tokens: tokens, family: family, resolver: resolver)
        return try run.run()
    }

    /// Where a restore-file rule carries the other family's flag (`-6` in an IPv4 file) as an
    /// option (not as some option's value): `iptables-restore` skips the whole rule there.
    static func otherFamilyFlag(_ tokens: [String], _ family: IPFamily?) -> Int? {
        guard let family else { return nil }
        let other = family == .v4 ? ["-6", "--ipv6"] : ["-4", "--ipv4"]
        for (i, token) in tokens.enumerated() where other.contains(token) {
            if i == 0 || flagsWithoutValue.contains(tokens[i - 1]) || !tokens[i - 1].hasPrefix("-") { return i }
        }
        return nil
    }

    /// Options that take no value (a `-6` after one of them is a flag, not its value).
    static let flagsWithoutValue: Set<String> = ["!", "-4", "-6", "--ipv4", "--ipv6", "--syn", "--random", "--persistent", "--random-fully",
                                                 "--clamp-mss-to-pmtu", "--limit-iface-in", "--limit-iface-out", "--socket-exists"]

    /// What `iptables-restore` still checks in the options before the flag that makes it skip a
    /// rule: a header option given twice, an unknown protocol, an interface name too long.
    static func checkBeforeSkipping(_ tokens: ArraySlice<String>, rule: String) throws(RuleParseError) {
        var seen: Set<String> = []
        let aliases = ["--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d", "--protocol": "-p",
                       "--in-interface": "-i", "--out-interface": "-o"]
        for (i, token) in zip(tokens.indices, tokens) {
            guard let option = ["-s", "-d", "-p", "-i", "-o"].contains(token) ? token : aliases[token] else { continue }
            func fail(_ reason: String, _ at: Int) -> RuleParseError {
                RuleParseError(rule: rule, token: tokens[at], position: at + 1, reason: reason)
            }
            if !seen.insert(option).inserted { throw fail("multiple \(option) options are not allowed", i) }
            var value = i + 1
            if value < tokens.endIndex && tokens[value] == "!" { value += 1 }
            guard value < tokens.endIndex else { continue }
            if option == "-p", UInt8(tokens[value]) == nil, IPProtocol.number(tokens[value]) == nil { throw fail("unknown protocol", value) }
            if option == "-p", value > i + 1 || (i > tokens.startIndex && tokens[i - 1] == "!"), (UInt8(tokens[value]) ?? IPProtocol.number(tokens[value])) == 0 {
                throw fail("rule would never match: \"! -p \(tokens[value])\" excludes every protocol", value)
            }
            if option == "-i" || option == "-o", tokens[value].utf8.count >= 16 || tokens[value].contains("/") || tokens[value].contains(" ") {
                throw fail("not a valid interface name", value)
            }
        }
    }

    func expand(_ token: String, environment: [String: String], rule: String, position: Int) throws(RuleParseError) -> String {
        guard token.contains("$") else { return token }
        var out = ""
        var chars = Array(token)[...]
        while let c = chars.popFirst() {
            guard c == "$" else { out.append(c); continue }
            var name = ""
            if chars.first == "{" {
                // `${NAME}` only: an unterminated `${X`, `${}` or `${A-B}` is refused, never half expanded.
                chars.removeFirst()
                guard let close = chars.firstIndex(of: "}") else {
                    throw RuleParseError(rule: rule, token: token, position: position, reason: "unterminated ${ (write ${NAME})")
                }
                name = String(chars[..<close])
                chars = chars[(close + 1)...]
                guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw RuleParseError(rule: rule, token: token, position: position, reason: "${\(name)} is not a variable name (letters, digits and _)")
                }
            } else {
                while let n = chars.first, n.isLetter || n.isNumber || n == "_" { name.append(n); chars.removeFirst() }
            }
            guard !name.isEmpty else { out.append("$"); continue }
            guard let value = environment[name] else {
                throw RuleParseError(rule: rule, token: token, position: position, reason: "environment variable \(name) is not set")
            }
            out += value
        }
        return out
    }
}

/// Shell-like splitting: whitespace separates, double and single quotes group, backslash escapes.
enum Tokenizer {
    static func split(_ text: String, rule: String, singleQuotes: Bool = true) throws(RuleParseError) -> [String] {
        // Over UTF-8 bytes: every delimiter is ASCII, and Character iteration is far slower. A
        // token without quotes or escapes is made straight from its bytes.
        var text = text
        let (tokens, quote, escaped) = text.withUTF8 { buffer -> ([String], UInt8, Bool) in
            var tokens: [String] = []
            var current: [UInt8] = [] // the token being unquoted, once it has a quote or an escape
            var inToken = false, plain = true, start = 0
            var quote: UInt8 = 0
            var escaped = false
            let backslash = UInt8(ascii: "\\"), single = UInt8(ascii: "'"), double = UInt8(ascii: "\"")
            func unquoting(at index: Int) {
                if !inToken { current.removeAll(keepingCapacity: true) }
                else if plain { current.removeAll(keepingCapacity: true); current.append(contentsOf: buffer[start..<index]) }
                inToken = true
                plain = false
            }
            for index in 0..<buffer.count {
                let byte = buffer[index]
                if escaped { current.append(byte); escaped = false; continue }
                if byte == backslash && quote != single { unquoting(at: index); escaped = true; continue }
                if quote != 0 {
                    if byte == quote { quote = 0 } else { current.append(byte) }
                    continue
                }
                if byte == double || (byte == single && singleQuotes) { unquoting(at: index); quote = byte; continue }
                if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") {
                    if inToken {
                        tokens.append(plain ? String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<index]), as: UTF8.self)
                                            : String(decoding: current, as: UTF8.self))
                        inToken = false
                    }
                    continue
                }
                if !inToken { inToken = true; plain = true; start = index }
                else if !plain { current.append(byte) }
            }
            if inToken && quote == 0 && !escaped {
                tokens.append(plain ? String(decoding: UnsafeBufferPointer(rebasing: buffer[start...]), as: UTF8.self)
                                    : String(decoding: current, as: UTF8.self))
            }
            return (tokens, quote, escaped)
        }
        if quote != 0 { throw RuleParseError(rule: rule, token: nil, position: nil, reason: "unterminated quote") }
        if escaped { throw RuleParseError(rule: rule, token: nil, position: nil, reason: "trailing backslash") }
        return tokens
    }

    /// No rule token may hold a control character: the kernel cuts names at a NUL, and a newline
    /// or other control character could not be saved and read back.
    static func refuseControlCharacters(_ tokens: [String], rule: String) throws(RuleParseError) {
        // A control character is one byte in UTF-8, and no byte of a multi-byte character is below 0x80.
        for (index, token) in tokens.enumerated() where token.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) {
            if let bad = token.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                let hex = String(bad.value, radix: 16, uppercase: true)
                let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                throw RuleParseError(rule: rule, token: token, position: index + 1, reason: "control character \(code) is not allowed")
            }
        }
    }

    /// `text` split at an ASCII separator, empty fields kept (over UTF-8 bytes: splitting a
    /// String walks grapheme clusters, which is far slower and finds the same ASCII separators).
    static func fields(_ text: String, _ separator: Unicode.Scalar, maxSplits: Int = .max) -> [String] {
        precondition(separator.isASCII, "an ASCII separator")
        let byte = UInt8(separator.value)
        guard text.utf8.contains(byte) else { return [text] }
        var text = text
        return text.withUTF8 { buffer in
            var out: [String] = []
            var start = 0
            for at in 0..<buffer.count where buffer[at] == byte && out.count < maxSplits {
                out.append(String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<at]), as: UTF8.self))
                start = at + 1
            }
            out.append(String(decoding: UnsafeBufferPointer(rebasing: buffer[start...]), as: UTF8.self))
            return out
        }
    }

    /// `words` joined by single spaces (`joined(separator:)` costs thousands of instructions for
    /// a rule's dozen words, and every rule added is rendered).
    static func joinWords(_ words: [String]) -> String {
        let count = words.reduce(max(0, words.count - 1)) { $0 + $1.utf8.count }
        // One allocation, each word copied as bytes (`String.append` costs hundreds of
        // instructions a call).
        return String(unsafeUninitializedCapacity: count) { out in
            var at = 0
            for (index, word) in words.enumerated() {
                if index > 0 { out[at] = UInt8(ascii: " "); at += 1 }
                var word = word
                at += word.withUTF8 { bytes in
                    guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
                    UnsafeMutableRawPointer(out.baseAddress! + at).copyMemory(from: base, byteCount: bytes.count)
                    return bytes.count
                }
            }
            return at
        }
    }

    /// Only ASCII digits (`Character.isNumber` also takes other scripts' digits, which `UInt16`
    /// would refuse anyway).
    static func isDecimal(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    static let plain = Set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

    /// Quotes as `iptables-save` does (xtables_save_string): only when a character needs it.
    static func quoteIfNeeded(_ value: String) -> String {
        if !value.isEmpty && value.allSatisfy({ plain.contains($0) }) { return value }
        var out = "\""
        for c in value {
            if c == "\"" || c == "\\" || c == "'" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }
}

/// One parse run over a rule's tokens.
private struct RuleParse {
    let text: String
    let tokens: [String]
    var family: IPFamily?
    let resolver: ((String, IPFamily?) -> [IPAddress])?
    var index = 0

    var proto: Negatable<UInt8>?
    var sources: [Negatable<IPPrefix>] = []
    var destinations: [Negatable<IPPrefix>] = []
    var inInterface: Negatable<String>?
    var outInterface: Negatable<String>?
    var matches: [Match] = []
    var target: Target?
    /// The module whose options are being read (`-m tcp`, or implied by `-p tcp`).
    var module: String?
    var pendingNegation = false
    var pendingTarget: String?
    /// Options given so far: the header's, and the current match instance's (iptables refuses
    /// each a second time).
    var seenHeader: [String] = [] // a handful each: a linear search is cheaper than hashing
    var seenModule: [String] = []
    /// Non-contiguous masks of `-s` / `-d`, one per address of the list.
    var sourceMasks: [IPAddress?] = []
    var destinationMasks: [IPAddress?] = []
    /// `-m state` (not conntrack) for the current match: knows no SNAT/DNAT.
    var stateModule = false
    /// Positions of `--src-type`/`--dst-type` values naming types xt_addrtype refuses in IPv6
    /// rules; checked once the rule's family is known.
    var ipv4OnlyAddressTypes: [Int] = []

    init(text: String, tokens: [String], family: IPFamily?, resolver: ((String, IPFamily?) -> [IPAddress])?) {
        self.text = text
        self.tokens = tokens
        self.family = family
        self.resolver = resolver
    }

    /// Refuses an option given twice (per rule for the header, per match for a match's options).
    mutating func once(_ key: String, header: Bool = false, name: String? = nil) throws(RuleParseError) {
        let seen = header ? seenHeader.contains(key) : seenModule.contains(key)
        if header { seenHeader.append(key) } else { seenModule.append(key) }
        if seen { throw fail(header ? "multiple \(name ?? key) options are not allowed" : "option \(name ?? key) can only be used once") }
    }

    func fail(_ reason: String, at position: Int? = nil) -> RuleParseError {
        let at = position ?? index
        let token = at >= 1 && at <= tokens.count ? tokens[at - 1] : nil
        return RuleParseError(rule: text, token: token, position: token == nil ? nil : at, reason: reason)
    }

    mutating func next(_ what: String) throws(RuleParseError) -> String {
        guard index < tokens.count else { throw fail("\(what) expected after \"\(tokens.last ?? "")\"", at: tokens.count) }
        index += 1
        return tokens[index - 1]
    }

    /// `!` may stand before an option (iptables-save) or before its value (older style).
    mutating func valueWithNegation(_ what: String) throws(RuleParseError) -> (String, Bool) {
        var inverted = pendingNegation
        pendingNegation = false
        var value = try next(what)
        if value == "!" { inverted = true; value = try next(what) }
        return (value, inverted)
    }

    mutating func run() throws(RuleParseError) -> [Rule] {
        guard !tokens.isEmpty else { throw fail("empty rule") }
        while index < tokens.count {
            let token = try next("option")
            if token == "!" {
                if pendingNegation { throw fail("double negation") }
                pendingNegation = true
                continue
            }
            try option(token)
        }
        if pendingNegation { throw fail("\"!\" at the end of the rule", at: tokens.count) }
        guard let target else { throw fail("no target: every rule needs -j TARGET (or -g CHAIN)", at: 0) }
        return try expandRules(target: target)
    }

    mutating func option(_ token: String) throws(RuleParseError) {
        let position = index
        switch token {
        case "-p", "--protocol":
            let (value, inverted) = try valueWithNegation("protocol")
            let number: UInt8?
            if let n = UInt8(value) { number = n } else { number = IPProtocol.number(value) }
            guard let number else { throw fail("unknown protocol") }
            try once("-p", header: true)
            if number == 0 && inverted { throw fail("rule would never match: \"! -p \(value)\" excludes every protocol") }
            if number == 1 && family == .v6 { throw fail("protocol icmp does not fit an IPv6 rule (use ipv6-icmp)") }
            if number == 58 { try setFamily(.v6, position: position + 1) }
            if number == 1 { try setFamily(.v4, position: position + 1) }
            proto = Negatable(number, inverted: inverted)
            module = nil
        case "-s", "--source", "--src", "-d", "--destination", "--dst":
            let isSource = token.hasPrefix("-s") || token == "--source" || token == "--src"
            let (value, inverted) = try valueWithNegation("address")
            try once(isSource ? "-s" : "-d", header: true)
            let (prefixes, masks) = try addresses(value, position: index)
            if inverted && prefixes.count > 1 {
                throw fail("\"!\" is not allowed with several addresses: it would match every address")
            }
            let list = prefixes.map { Negatable($0, inverted: inverted) }
            if isSource { sources = list; sourceMasks = masks } else { destinations = list; destinationMasks = masks }
        case "-i", "--in-interface", "-o", "--out-interface":
            let (value, inverted) = try valueWithNegation("interface")
            try once(token == "-i" || token == "--in-interface" ? "-i" : "-o", header: true)
            guard !value.isEmpty, value.utf8.count < 16, !value.contains("/"), !value.contains(" ") else { throw fail("not a valid interface name") }
            if token == "-i" || token == "--in-interface" { inInterface = Negatable(value, inverted: inverted) }
            else { outInterface = Negatable(value, inverted: inverted) }
        case "-m", "--match":
            let name = try next("match name")
            try beginModule(name)
        case "-j", "--jump", "-g", "--goto":
            if pendingNegation { throw fail("a target cannot be negated") }
            if target != nil { throw fail("a rule has one target") }
            let name = try next("target")
            try parseTarget(name, goto: token == "-g" || token == "--goto")
        case "-4", "--ipv4", "-6", "--ipv6":
            try setFamily(token.hasSuffix("4") ? .v4 : .v6, position: position)
        default:
            if let module, try moduleOption(module, token) { return }
            // getopt abbreviations: with multiport loaded, `--dport` means its `--dports`.
            if ["--sport", "--source-port", "--dport", "--destination-port", "--port"].contains(token),
               matches.contains(where: { if case .multiport(let mp) = $0 { return !mp.ports.isEmpty }; return false }) {
                throw fail("option \(token) is multiport's, which has its ports already (one of --sports, --dports, --ports)")
            }
            // An option no loaded match knows loads the protocol's match (`-p tcp … --dport 80`), as
            // iptables does, also after another match (`-p tcp -m comment --comment x --dport 80`).
            let implicitLoaded = matches.contains { if case .tcp = $0 { return true }; if case .udp = $0 { return true }
                                                    if case .icmp = $0 { return true }; if case .icmp6 = $0 { return true }; return false }
            if !implicitLoaded, let proto, !proto.inverted, ["tcp", "udp", "icmp", "ipv6-icmp"].contains(IPProtocol.name(proto.value)) {
                // Implicit protocol match: `-p tcp --dport 80`.
                let name = IPProtocol.name(proto.value) == "ipv6-icmp" ? "icmp6" : IPProtocol.name(proto.value)
                try beginModule(name)
                if try moduleOption(name, token) { return }
                self.module = nil
                matches.removeLast()
            }
            throw fail(token.hasPrefix("-") ? "unknown option" : "unexpected value (not an option)")
        }
    }

    mutating func setFamily(_ wanted: IPFamily, position: Int) throws(RuleParseError) {
        if let family, family != wanted { throw fail("does not fit an \(family) rule", at: position) }
        family = wanted
    }

    // MARK: Addresses

    /// The prefixes of `-s`/`-d` and, per prefix, its non-contiguous mask (nil for a length).
    mutating func addresses(_ value: String, position: Int) throws(RuleParseError) -> ([IPPrefix], [IPAddress?]) {
        var out: [IPPrefix] = []
        var masks: [IPAddress?] = []
        for part in Tokenizer.fields(value, ",") {
            guard !part.isEmpty else { throw fail("empty address", at: position) }
            if let (prefix, mask) = parsePrefix(part) {
                try setFamily(prefix.family, position: position)
                out.append(prefix)
                masks.append(mask)
                continue
            }
            // Host name: as firewallnetns does, one rule per address it resolves to.
            let name = part.split(separator: "/").first.map(String.init) ?? part
            guard let resolver, name.contains(where: { $0.isLetter }), !name.contains(":") else {
                throw fail("not a valid address or CIDR", at: position)
            }
            let resolved = resolver(name, family)
            guard !resolved.isEmpty else { throw fail("host name does not resolve\(family.map { " to an \($0) address" } ?? "")", at: position) }
            let chosen = family ?? resolved[0].family
            try setFamily(chosen, position: position)
            let hosts = resolved.filter { $0.family == chosen }.map { IPPrefix(address: $0, length: chosen.bitCount)! }
            out += hosts
            masks += hosts.map { _ in nil }
        }
        return (out, masks)
    }

    /// `ADDR`, `ADDR/LEN` or `ADDR/MASK` (a netmask in address form, as iptables accepts). A
    /// contiguous mask becomes a length; a non-contiguous one is returned with the masked address
    /// as a full-length prefix.
    func parsePrefix(_ text: String) -> (IPPrefix, IPAddress?)? {
        let parts = Tokenizer.fields(text, "/", maxSplits: 1)
        guard let address = IPAddress(parts[0]) else { return nil }
        if parts.count == 1 { return (IPPrefix(address: address, length: address.family.bitCount)!, nil) }
        if !parts[1].isEmpty, parts[1].utf8.count <= 3, Tokenizer.isDecimal(parts[1]), let length = Int(parts[1]) {
            return IPPrefix(address: address, length: length).map { ($0, nil) }
        }
        guard let mask = IPAddress(parts[1]), mask.family == address.family else { return nil }
        let ones = mask.bytes.reduce(0) { $0 + $1.nonzeroBitCount }
        if let prefix = IPPrefix(address: address, length: ones), Self.contiguousMask(family: address.family, length: ones) == mask {
            return (prefix, nil)
        }
        let masked = IPAddress(family: address.family, bytes: zip(address.bytes, mask.bytes).map { $0 & $1 })!
        return (IPPrefix(address: masked, length: address.family.bitCount)!, mask)
    }

    static func contiguousMask(family: IPFamily, length: Int) -> IPAddress {
        IPAddress(family: family, bytes: (0..<family.byteCount).map { i in
            let bits = max(0, min(8, length - i * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        })!
    }

    // MARK: Match modules

    mutating func beginModule(_ name: String) throws(RuleParseError) {
        let canonical = name == "state" ? "conntrack" : name == "icmpv6" ? "icmp6" : name
        seenModule = []
        stateModule = name == "state"
        switch canonical {
        case "tcp", "udp":
            guard let proto, IPProtocol.name(proto.value) == canonical, !proto.inverted else {
                throw fail("-m \(name) needs -p \(name) before it")
            }
            matches.append(canonical == "tcp" ? .tcp(TCPMatch()) : .udp(UDPMatch()))
        case "icmp":
            try setFamily(.v4, position: index)
            guard let proto, proto.value == 1, !proto.inverted else { throw fail("-m \(name) needs -p icmp before it") }
            matches.append(.icmp(ICMPMatch(type: 255)))
        case "icmp6":
            try setFamily(.v6, position: index)
            guard let proto, proto.value == 58, !proto.inverted else { throw fail("-m \(name) needs -p ipv6-icmp before it") }
            matches.append(.icmp6(ICMPMatch(type: 255)))
        case "multiport":
            guard let proto, [6, 17, 132, 136, 33].contains(proto.value), !proto.inverted else {
                throw fail("-m multiport needs -p tcp, udp, sctp, dccp or udplite")
            }
            matches.append(.multiport(MultiportMatch(direction: .destination, ports: [], inverted: false)))
        case "conntrack": matches.append(.conntrack(ConntrackMatch(states: [], inverted: false)))
        case "mark": matches.append(.mark(MarkMatch(value: 0, mask: 0xffff_ffff, inverted: false)))
        case "set": matches.append(.set(SetMatch(name: "", directions: [], inverted: false)))
        case "comment": matches.append(.comment(""))
        case "limit": matches.append(.limit(LimitMatch(average: 10000 * 3600 / 3, burst: 5)))
        case "iprange": matches.append(.iprange(IPRangeMatch()))
        case "addrtype": matches.append(.addrtype(AddrTypeMatch()))
        case "owner": matches.append(.owner(OwnerMatch()))
        default: throw fail("unsupported match module")
        }
        module = canonical
    }

    /// Handles an option of the current module; false if the module does not know it.
    mutating func moduleOption(_ module: String, _ option: String) throws(RuleParseError) -> Bool {
        guard var match = matches.last else { return false }
        defer { matches[matches.count - 1] = match }
        switch (module, match) {
        case ("tcp", .tcp(var tcp)):
            switch option {
            case "--sport", "--source-port":
                try once("--sport"); let (v, inv) = try valueWithNegation("port"); tcp.sourcePorts = Negatable(try portRange(v), inverted: inv)
            case "--dport", "--destination-port":
                try once("--dport"); let (v, inv) = try valueWithNegation("port"); tcp.destinationPorts = Negatable(try portRange(v), inverted: inv)
            case "--tcp-flags":
                try once("flags", name: "--syn or --tcp-flags")
                let (mask, inv) = try valueWithNegation("flag mask")
                let compare = try next("flags")
                tcp.flags = Negatable(TCPFlags(mask: try tcpFlags(mask), compare: try tcpFlags(compare)), inverted: inv)
            case "--syn":
                try once("flags", name: "--syn or --tcp-flags")
                let inverted = pendingNegation; pendingNegation = false
                tcp.flags = Negatable(TCPFlags(mask: 0x17, compare: 0x02), inverted: inverted)
            default: return false
            }
            match = .tcp(tcp)
        case ("udp", .udp(var udp)):
            switch option {
            case "--sport", "--source-port":
                try once("--sport"); let (v, inv) = try valueWithNegation("port"); udp.sourcePorts = Negatable(try portRange(v), inverted: inv)
            case "--dport", "--destination-port":
                try once("--dport"); let (v, inv) = try valueWithNegation("port"); udp.destinationPorts = Negatable(try portRange(v), inverted: inv)
            default: return false
            }
            match = .udp(udp)
        case ("icmp", .icmp):
            guard option == "--icmp-type" else { return false }
            try once(option)
            let (v, inv) = try valueWithNegation("ICMP type")
            guard var icmp = try ICMPNames.parse(v, family: .v4, fail: { fail($0) }) else { throw fail("unknown ICMP type") }
            icmp.inverted = inv
            match = .icmp(icmp)
        case ("icmp6", .icmp6):
            guard option == "--icmpv6-type" else { return false }
            try once(option)
            let (v, inv) = try valueWithNegation("ICMPv6 type")
            guard var icmp = try ICMPNames.parse(v, family: .v6, fail: { fail($0) }) else { throw fail("unknown ICMPv6 type") }
            icmp.inverted = inv
            match = .icmp6(icmp)
        case ("multiport", .multiport(var mp)):
            let direction: MultiportMatch.Direction
            switch option {
            // iptables also takes an unambiguous abbreviation (getopt): `--dport` after
            // `-m multiport` is `--dports`, not the tcp match's option.
            case "--sports", "--source-ports", "--sport", "--source-port": direction = .source
            case "--dports", "--destination-ports", "--dport", "--destination-port": direction = .destination
            case "--ports", "--port": direction = .either
            default: return false
            }
            try once("ports", name: "--sports, --dports or --ports")
            let (v, inv) = try valueWithNegation("port list")
            var ports: [PortRange] = []
            var slots = 0
            for part in Tokenizer.fields(v, ",") {
                let range = try portRange(part)
                // multiport's ranges must rise: `5:5` and `9:5` are refused, as iptables does.
                if part.contains(":") && range.lower >= range.upper { throw fail("invalid port range \"\(part)\" (FIRST:LAST with FIRST < LAST)") }
                slots += range.isSingle ? 1 : 2
                ports.append(range)
            }
            if slots > 15 { throw fail("too many ports (at most 15, a range counts twice)") }
            mp.direction = direction; mp.ports = ports; mp.inverted = inv
            match = .multiport(mp)
        case ("conntrack", .conntrack(var ct)):
            guard option == (stateModule ? "--state" : "--ctstate") else { return false }
            try once(option)
            let (v, inv) = try valueWithNegation("state list")
            var states = Set<ConntrackState>()
            for part in Tokenizer.fields(v, ",") {
                guard let state = ConntrackState(rawValue: part.uppercased()) else { throw fail("unknown conntrack state \"\(part)\"") }
                if stateModule && (state == .snat || state == .dnat) { throw fail("-m state knows no state \"\(part)\" (use -m conntrack --ctstate)") }
                states.insert(state)
            }
            ct.states = states; ct.inverted = inv
            match = .conntrack(ct)
        case ("mark", .mark(var mark)):
            guard option == "--mark" else { return false }
            try once(option)
            let (v, inv) = try valueWithNegation("mark")
            let (value, mask) = try valueMask(v)
            mark.value = value; mark.mask = mask; mark.inverted = inv
            match = .mark(mark)
        case ("set", .set(var set)):
            guard option == "--match-set" else { return false }
            try once(option)
            let (name, inv) = try valueWithNegation("set name")
            guard Names.isValidSetName(name) else { throw fail("not a valid set name (1-31 bytes, no control characters, quotes or spaces)") }
            let flags = try next("src/dst flags")
            var directions: [SetMatch.Direction] = []
            for part in flags.split(separator: ",", omittingEmptySubsequences: false) {
                guard let direction = SetMatch.Direction(rawValue: String(part)) else { throw fail("expected src or dst") }
                directions.append(direction)
            }
            guard (1...6).contains(directions.count) else { throw fail("1 to 6 src/dst flags") }
            set.name = name; set.directions = directions; set.inverted = inv
            match = .set(set)
        case ("comment", .comment):
            guard option == "--comment" else { return false }
            try once(option)
            let text = try next("comment")
            guard text.utf8.count < 256 else { throw fail("comment longer than 255 bytes") }
            match = .comment(text)
        case ("limit", .limit(var limit)):
            switch option {
            case "--limit": try once(option); limit.average = try rate(try next("rate"))
            case "--limit-burst":
                try once(option)
                guard let burst = UInt32(try next("burst")), burst > 0, burst <= 10000 else { throw fail("burst must be 1 to 10000") }
                limit.burst = burst
            default: return false
            }
            match = .limit(limit)
        case ("iprange", .iprange(var range)):
            guard option == "--src-range" || option == "--dst-range" else { return false }
            try once(option)
            let (v, inv) = try valueWithNegation("address range")
            // `FIRST-LAST`, or one address (a range of one, as iptables reads it).
            let parts = v.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let first = IPAddress(parts[0]), let last = parts.count == 2 ? IPAddress(parts[1]) : first, first.family == last.family else {
                throw fail("expected an address range FIRST-LAST")
            }
            guard !(last < first) else { throw fail("the range \(first)-\(last) is empty (FIRST is above LAST): it would never match") }
            try setFamily(first.family, position: index)
            let value = Negatable(AddressRange(first: first, last: last), inverted: inv)
            if option == "--src-range" { range.source = value } else { range.destination = value }
            match = .iprange(range)
        case ("addrtype", .addrtype(var addrtype)):
            switch option {
            case "--src-type", "--dst-type":
                try once(option)
                let (v, inv) = try valueWithNegation("address types")
                let types = Negatable(try addressTypes(v), inverted: inv)
                if !types.value.isDisjoint(with: .ipv4Only) { ipv4OnlyAddressTypes.append(index) }
                if option == "--src-type" { addrtype.source = types } else { addrtype.destination = types }
            case "--limit-iface-in", "--limit-iface-out":
                if pendingNegation { throw fail("option \(option) cannot be negated") }
                try once(option)
                if addrtype.limit != nil { throw fail("--limit-iface-in and --limit-iface-out cannot be used together") }
                addrtype.limit = option == "--limit-iface-in" ? .input : .output
            default: return false
            }
            match = .addrtype(addrtype)
        case ("owner", .owner(var owner)):
            switch option {
            case "--uid-owner", "--gid-owner":
                try once(option)
                let group = option == "--gid-owner"
                let (v, inv) = try valueWithNegation(group ? "group" : "user")
                let ids = Negatable(try ownerIDs(v, group: group), inverted: inv)
                if group { owner.gid = ids } else { owner.uid = ids }
            case "--socket-exists":
                try once(option)
                owner.socketExists = !pendingNegation
                pendingNegation = false
            default: return false
            }
            match = .owner(owner)
        default:
            return false
        }
        return true
    }

    func portRange(_ text: String) throws(RuleParseError) -> PortRange {
        let parts = Tokenizer.fields(text, ":", maxSplits: 1)
        func port(_ p: String, default value: UInt16) throws(RuleParseError) -> UInt16 {
            if p.isEmpty { return value }
            if Tokenizer.isDecimal(p), let n = UInt16(p) { return n }
            if let entry = getservbyname(p, nil) { return UInt16(bigEndian: UInt16(truncatingIfNeeded: entry.pointee.s_port)) }
            throw fail("not a valid port \"\(p)\" (0-65535 or a service name)")
        }
        if parts.count == 1 {
            guard !parts[0].isEmpty else { throw fail("empty port") }
            return PortRange(try port(parts[0], default: 0))
        }
        let lower = try port(parts[0], default: 0), upper = try port(parts[1], default: 65535)
        guard lower <= upper else { throw fail("port range \(lower):\(upper) is reversed") }
        return PortRange(lower, upper)
    }

    /// `TYPE[,TYPE…]`: route type names in any case, or a prefix that fits one name only
    /// (iptables takes the first name a prefix fits: `UN` would be UNSPEC).
    func addressTypes(_ text: String) throws(RuleParseError) -> AddressTypes {
        var types = AddressTypes()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let upper = part.uppercased()
            let found = AddressTypes.names.indices.filter { AddressTypes.names[$0].hasPrefix(upper) }
            guard !part.isEmpty, let first = found.first else {
                throw fail("unknown address type \"\(part)\" (one of \(AddressTypes.names.joined(separator: ", ")))")
            }
            if found.count > 1 { throw fail("ambiguous address type \"\(part)\": \(AddressTypes.names[first]) or \(AddressTypes.names[found[1]])?") }
            types.insert(AddressTypes(rawValue: 1 << first))
        }
        return types
    }

    /// `ID`, `FIRST-LAST` or `FIRST:LAST` (numbers as iptables reads them: 0x… hexadecimal, 0…
    /// octal), else a user or group name this system knows (getpwnam / getgrnam, as iptables
    /// resolves it). Numbers come first, so the saved number always reads back as itself (iptables
    /// asks for a name first; user and group names are never all digits). 4294967295 is the
    /// kernel's "no id".
    func ownerIDs(_ text: String, group: Bool) throws(RuleParseError) -> ClosedRange<UInt32> {
        let parts = text.split(maxSplits: 1, omittingEmptySubsequences: false) { $0 == "-" || $0 == ":" }
        let ids = parts.map { Self.cNumber($0).flatMap { $0 < UInt64(UInt32.max) ? UInt32($0) : nil } }
        guard let first = ids[0], let last = ids.count == 2 ? ids[1] : first else {
            if let id = Self.accountID(text, group: group) { return id...id }
            let what = group ? "group" : "user"
            throw fail("not a \(what) id (0-4294967294), id range FIRST-LAST or \(what) name known here")
        }
        guard first <= last else { throw fail("the range \(first)-\(last) is empty (FIRST is above LAST): it would never match") }
        return first...last
    }

    /// An unsigned number as strtoul with base 0 reads it whole (no sign, no blanks).
    static func cNumber(_ text: Substring) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            let digits = text.dropFirst(2)
            return !digits.isEmpty && digits.allSatisfy(\.isHexDigit) ? UInt64(digits, radix: 16) : nil
        }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return text.hasPrefix("0") ? UInt64(text, radix: 8) : UInt64(text)
    }

    /// A user's or group's id by name, nil when this system knows no such name.
    static func accountID(_ name: String, group: Bool) -> UInt32? {
        var size = 1024
        while size <= 1 << 20 {
            var buffer = [CChar](repeating: 0, count: size)
            var id: UInt32?
            let status: Int32
            if group {
                var entry = Glibc.group(), found: UnsafeMutablePointer<Glibc.group>?
                status = getgrnam_r(name, &entry, &buffer, size, &found)
                if found != nil { id = entry.gr_gid }
            } else {
                var entry = passwd(), found: UnsafeMutablePointer<passwd>?
                status = getpwnam_r(name, &entry, &buffer, size, &found)
                if found != nil { id = entry.pw_uid }
            }
            guard status == ERANGE else { return id }
            size *= 4
        }
        return nil
    }

    func tcpFlags(_ text: String) throws(RuleParseError) -> UInt8 {
        let names: [String: UInt8] = ["FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ALL": 0x3f, "NONE": 0]
        var flags: UInt8 = 0
        for part in text.split(separator: ",") {
            guard let bit = names[part.uppercased()] else { throw fail("unknown TCP flag \"\(part)\"") }
            flags |= bit
        }
        return flags
    }

    func valueMask(_ text: String) throws(RuleParseError) -> (UInt32, UInt32) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        // strtoul base 0, as iptables reads it: 0x… hexadecimal, 0… octal, else decimal.
        func number(_ s: String) throws(RuleParseError) -> UInt32 {
            guard !s.contains("+"), !s.contains("-") else { throw fail("not a 32-bit number \"\(s)\"") }
            if s.hasPrefix("0x") || s.hasPrefix("0X"), let v = UInt32(s.dropFirst(2), radix: 16) { return v }
            if s.hasPrefix("0"), s.count > 1, let v = UInt32(s.dropFirst(), radix: 8) { return v }
            if let v = UInt32(s) { return v }
            throw fail("not a 32-bit number \"\(s)\"")
        }
        guard !parts.isEmpty else { throw fail("empty value") }
        return (try number(parts[0]), parts.count == 2 ? try number(parts[1]) : 0xffff_ffff)
    }

    /// `N/second|minute|hour|day` (any prefix of the unit) → iptables' average period.
    func rate(_ text: String) throws(RuleParseError) -> UInt32 {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let count = UInt32(parts[0]), count > 0 else { throw fail("not a rate N/unit") }
        var seconds: UInt32 = 1
        if parts.count == 2 {
            let unit = parts[1].lowercased()
            let units: [(String, UInt32)] = [("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)]
            guard !unit.isEmpty, let match = units.first(where: { $0.0.hasPrefix(unit) }) else { throw fail("unknown rate unit \"\(parts[1])\"") }
            seconds = match.1
        }
        let period = UInt64(10000) * UInt64(seconds) / UInt64(count)
        guard period > 0, period <= UInt64(UInt32.max) else { throw fail("rate out of range") }
        return UInt32(period)
    }

    // MARK: Targets

    mutating func parseTarget(_ name: String, goto: Bool) throws(RuleParseError) {
        module = nil
        if goto {
            guard ChainNames.isValidUserChain(name) else { throw fail("not a valid chain name") }
            target = .goto(name)
            return
        }
        let family = self.family ?? .v4
        switch name {
        case "ACCEPT": target = .accept
        case "DROP": target = .drop
        case "RETURN": target = .return
        case "REJECT":
            var type = RejectType.default(family)
            if index < tokens.count, tokens[index] == "--reject-with" {
                index += 1
                let value = try next("reject type")
                guard let named = RejectType.named(value, family: family) else { throw fail("unknown reject type for \(family)") }
                type = named
            }
            target = .reject(type)
        case "LOG":
            var prefix = "", level: UInt8 = 4
            seenModule = []
            while index < tokens.count {
                switch tokens[index] {
                case "--log-prefix":
                    index += 1
                    try once("--log-prefix")
                    prefix = try next("prefix")
                    guard !prefix.isEmpty else { throw fail("the log prefix is empty") }
                    // iptables cuts a longer prefix to 29 bytes without a word; docknfv refuses it.
                    guard prefix.utf8.count <= 29 else { throw fail("log prefix longer than 29 bytes") }
                case "--log-level":
                    index += 1
                    try once("--log-level")
                    let value = try next("level")
                    // libxt_LOG's names, case as written there.
                    let levels: [String: UInt8] = ["emerg": 0, "panic": 0, "alert": 1, "crit": 2, "error": 3, "warning": 4,
                                                   "notice": 5, "info": 6, "debug": 7]
                    if value.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt8(value), n <= 7 { level = n }
                    else if let n = levels[value] { level = n }
                    else { throw fail("unknown log level") }
                default: throw fail("unknown LOG option", at: index + 1)
                }
            }
            target = .log(prefix: prefix, level: level)
        case "NFLOG":
            // XT_NFLOG_DEFAULT_THRESHOLD is 0 (the threshold is deprecated in the kernel).
            var group: UInt16 = 0, prefix = "", size: UInt32?, threshold: UInt16 = 0
            seenModule = []
            while index < tokens.count {
                let option = tokens[index]
                index += 1
                if option == "--nflog-range" {
                    throw fail("--nflog-range has no effect in the kernel; use --nflog-size")
                }
                guard ["--nflog-group", "--nflog-prefix", "--nflog-size", "--nflog-threshold"].contains(option) else {
                    throw fail("unknown NFLOG option", at: index)
                }
                try once(option)
                let value = try next("value")
                switch option {
                case "--nflog-group": guard let g = UInt16(value) else { throw fail("group must be 0-65535") }; group = g
                case "--nflog-prefix": guard value.utf8.count < 64 else { throw fail("prefix longer than 63 bytes") }; prefix = value
                case "--nflog-size": guard let s = UInt32(value) else { throw fail("size must be a number") }; size = s
                default: guard let t = UInt16(value) else { throw fail("threshold must be 0-65535") }; threshold = t
                }
            }
            target = .nflog(group: group, prefix: prefix, size: size, threshold: threshold)
        case "DNAT", "SNAT", "MASQUERADE", "REDIRECT":
            let addressOption = name == "DNAT" ? "--to-destination" : name == "SNAT" ? "--to-source" : nil
            var range: NATRange?
            var ports: PortRange?
            var flags: NATFlags = []
            seenModule = []
            while index < tokens.count, tokens[index].hasPrefix("--") {
                let option = tokens[index]
                index += 1
                switch option {
                case _ where addressOption != nil && (option == addressOption || option == "--to"):
                    try once(addressOption!)
                    let value = try next("address")
                    range = try natRange(value)
                case "--to-ports" where addressOption == nil:
                    try once(option)
                    let value = try next("ports")
                    try requireNATPortProtocol()
                    if value.contains(":") { throw fail("FIRST:LAST is not a --to-ports range (use FIRST-LAST)") }
                    ports = try portRange(value.replacingOccurrences("-", with: ":"))
                case "--random": try once(option); flags.insert(.random)
                case "--persistent" where addressOption != nil: try once(option); flags.insert(.persistent)
                case "--random-fully" where name == "SNAT" || name == "MASQUERADE": try once(option); flags.insert(.randomFully)
                default: throw fail("unknown option for target \(name)", at: index)
                }
            }
            if let addressOption {
                guard var range else { throw fail("\(name) needs \(addressOption) ADDRESS[:PORT]", at: index) }
                range.flags = flags
                target = name == "DNAT" ? .dnat(range) : .snat(range)
            } else {
                target = name == "MASQUERADE" ? .masquerade(ports: ports, flags: flags) : .redirect(ports: ports, flags: flags)
            }
        case "MARK":
            guard index < tokens.count else { throw fail("MARK needs --set-mark or --set-xmark") }
            let option = tokens[index]
            index += 1
            let (value, mask) = try valueMask(try next("mark"))
            switch option {
            case "--set-xmark": target = .mark(value: value, mask: mask)
            case "--set-mark": target = .mark(value: value, mask: value | mask)
            default: throw fail("unknown MARK option", at: index - 1)
            }
        case "TCPMSS":
            guard index < tokens.count else { throw fail("TCPMSS needs --clamp-mss-to-pmtu or --set-mss") }
            let option = tokens[index]
            index += 1
            switch option {
            case "--clamp-mss-to-pmtu": target = .tcpmss(nil)
            case "--set-mss":
                guard let mss = UInt16(try next("mss")), mss > 0, mss < 0xffff else { throw fail("MSS must be 1-65534") }
                target = .tcpmss(mss)
            default: throw fail("unknown TCPMSS option", at: index)
            }
        default:
            guard ChainNames.isValidUserChain(name) else {
                throw fail(name.uppercased() == name && !name.isEmpty ? "unsupported target" : "not a valid target or chain name")
            }
            target = .jump(name)
        }
        if index < tokens.count && target != nil && tokens[index].hasPrefix("--") {
            throw fail("unknown option for target \(name)", at: index + 1)
        }
    }

    /// NAT ports need a protocol with ports (libxt_*NAT's check: TCP, UDP, SCTP, DCCP, or ICMP's id).
    func requireNATPortProtocol() throws(RuleParseError) {
        guard let proto, [6, 17, 132, 33, 1].contains(proto.value) else {
            throw fail("a NAT port needs -p tcp, udp, sctp or dccp")
        }
    }

    func natRange(_ text: String) throws(RuleParseError) -> NATRange {
        var addressPart = text, portPart: String?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("unterminated [IPv6 address]") }
            addressPart = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.hasPrefix(":") { portPart = String(rest.dropFirst()) } else if !rest.isEmpty { throw fail("unexpected text after ]") }
        } else if text.filter({ $0 == ":" }).count == 1 {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            addressPart = parts[0]; portPart = parts[1]
        }
        var range = NATRange()
        if !addressPart.isEmpty {
            let bounds = addressPart.split(separator: "-", maxSplits: 1).map(String.init)
            guard let first = IPAddress(bounds[0]) else { throw fail("not a valid address \"\(bounds[0])\"") }
            let last = bounds.count == 2 ? IPAddress(bounds[1]) : first
            guard let last, last.family == first.family, !(last < first) else { throw fail("not a valid address range") }
            if let family, family != first.family { throw fail("address does not fit an \(family) rule") }
            range.addresses = AddressRange(first: first, last: last)
        }
        if let portPart {
            try requireNATPortProtocol()
            range.ports = try portRange(portPart.replacingOccurrences("-", with: ":"))
        }
        if range.addresses == nil && range.ports == nil { throw fail("empty NAT destination") }
        return range
    }

    // MARK: Finishing

    func expandRules(target: Target) throws(RuleParseError) -> [Rule] {
        let family = self.family ?? .v4
        if case .reject(let type) = target, RejectType.named(type.name, family: family) == nil {
            throw fail("reject type \(type.name) does not fit an \(family) rule", at: 0)
        }
        if case .reject(let type) = target, type.name == "tcp-reset", proto?.value != 6 || proto?.inverted == true {
            throw fail("REJECT --reject-with tcp-reset needs -p tcp", at: 0)
        }
        if case .tcpmss = target {
            let hasSYN = matches.contains { if case .tcp(let t) = $0, let f = t.flags, !f.inverted, f.value.compare & 0x02 != 0 { return true }; return false }
            guard hasSYN else { throw fail("TCPMSS needs -p tcp --tcp-flags SYN,RST SYN (or --syn)", at: 0) }
        }
        for match in matches {
            if case .set(let set) = match, set.name.isEmpty { throw fail("-m set needs --match-set NAME src|dst", at: 0) }
            if case .conntrack(let ct) = match, ct.states.isEmpty { throw fail("-m conntrack needs --ctstate", at: 0) }
            if case .multiport(let mp) = match, mp.ports.isEmpty { throw fail("-m multiport needs --dports, --sports or --ports", at: 0) }
            if case .addrtype(let a) = match, a.source == nil, a.destination == nil { throw fail("-m addrtype needs --src-type or --dst-type", at: 0) }
            if case .owner(let o) = match, o.uid == nil, o.gid == nil, o.socketExists == nil {
                throw fail("-m owner needs --uid-owner, --gid-owner or --socket-exists", at: 0)
            }
        }
        if family == .v6, let position = ipv4OnlyAddressTypes.first {
            throw fail("address types BROADCAST, BLACKHOLE, PROHIBIT, THROW, NAT and XRESOLVE do not exist in IPv6 rules", at: position)
        }
        if (sources.count > 1 || destinations.count > 1) && (sources + destinations).contains(where: \.inverted) {
            throw fail("\"!\" is not allowed with several source or destination addresses", at: 0)
        }
        let sourceList: [(Negatable<IPPrefix>?, IPAddress?)] = sources.isEmpty ? [(nil, nil)] : Array(zip(sources.map { Optional($0) }, sourceMasks))
        let destinationList: [(Negatable<IPPrefix>?, IPAddress?)] = destinations.isEmpty ? [(nil, nil)] : Array(zip(destinations.map { Optional($0) }, destinationMasks))
        var rules: [Rule] = []
        for (source, sourceMask) in sourceList {
            for (destination, destinationMask) in destinationList {
                rules.append(Rule(family: family, proto: proto, source: source.map { Negatable($0.value.network, inverted: $0.inverted) },
                                  destination: destination.map { Negatable($0.value.network, inverted: $0.inverted) },
                                  inInterface: inInterface, outInterface: outInterface, matches: matches, target: target,
                                  sourceMask: sourceMask, destinationMask: destinationMask))
            }
        }
        return rules
    }
}

/// ICMP / ICMPv6 type names as iptables 1.8 knows them (libxt_icmp's tables, in its order).
enum ICMPNames {
    typealias Entry = (name: String, type: UInt8, codes: ClosedRange<UInt8>)
    static let v4: [Entry] = [
        ("any", 255, 0...255), ("echo-reply", 0, 0...255), ("pong", 0, 0...255),
        ("destination-unreachable", 3, 0...255), ("network-unreachable", 3, 0...0), ("host-unreachable", 3, 1...1),
        ("protocol-unreachable", 3, 2...2), ("port-unreachable", 3, 3...3), ("fragmentation-needed", 3, 4...4),
        ("source-route-failed", 3, 5...5), ("network-unknown", 3, 6...6), ("host-unknown", 3, 7...7),
        ("network-prohibited", 3, 9...9), ("host-prohibited", 3, 10...10), ("TOS-network-unreachable", 3, 11...11),
        ("TOS-host-unreachable", 3, 12...12), ("communication-prohibited", 3, 13...13),
        ("host-precedence-violation", 3, 14...14), ("precedence-cutoff", 3, 15...15),
        ("source-quench", 4, 0...255),
        ("redirect", 5, 0...255), ("network-redirect", 5, 0...0), ("host-redirect", 5, 1...1),
        ("TOS-network-redirect", 5, 2...2), ("TOS-host-redirect", 5, 3...3),
        ("echo-request", 8, 0...255), ("ping", 8, 0...255),
        ("router-advertisement", 9, 0...255), ("router-solicitation", 10, 0...255),
        ("time-exceeded", 11, 0...255), ("ttl-exceeded", 11, 0...255), ("ttl-zero-during-transit", 11, 0...0),
        ("ttl-zero-during-reassembly", 11, 1...1),
        ("parameter-problem", 12, 0...255), ("ip-header-bad", 12, 0...0), ("required-option-missing", 12, 1...1),
        ("timestamp-request", 13, 0...255), ("timestamp-reply", 14, 0...255),
        ("address-mask-request", 17, 0...255), ("address-mask-reply", 18, 0...255),
    ]
    static let v6: [Entry] = [
        ("destination-unreachable", 1, 0...255), ("no-route", 1, 0...0), ("communication-prohibited", 1, 1...1),
        ("beyond-scope", 1, 2...2), ("address-unreachable", 1, 3...3), ("port-unreachable", 1, 4...4),
        ("failed-policy", 1, 5...5), ("reject-route", 1, 6...6),
        ("packet-too-big", 2, 0...255),
        ("time-exceeded", 3, 0...255), ("ttl-exceeded", 3, 0...255), ("ttl-zero-during-transit", 3, 0...0),
        ("ttl-zero-during-reassembly", 3, 1...1),
        ("parameter-problem", 4, 0...255), ("bad-header", 4, 0...0), ("unknown-header-type", 4, 1...1), ("unknown-option", 4, 2...2),
        ("echo-request", 128, 0...255), ("ping", 128, 0...255), ("echo-reply", 129, 0...255), ("pong", 129, 0...255),
        ("router-solicitation", 133, 0...255), ("router-advertisement", 134, 0...255),
        ("neighbour-solicitation", 135, 0...255), ("neighbor-solicitation", 135, 0...255),
        ("neighbour-advertisement", 136, 0...255), ("neighbor-advertisement", 136, 0...255), ("redirect", 137, 0...255),
    ]

    /// A name or an unambiguous prefix of one (any case, as iptables matches them), `TYPE` or
    /// `TYPE/CODE`. nil = not an ICMP type.
    static func parse(_ text: String, family: IPFamily, fail: (String) -> RuleParseError) throws(RuleParseError) -> ICMPMatch? {
        let lowered = text.lowercased()
        let found = (family == .v4 ? v4 : v6).filter { $0.name.lowercased().hasPrefix(lowered) }
        if found.count > 1 && !text.isEmpty { throw fail("ambiguous ICMP type \"\(text)\": \(found[0].name) or \(found[1].name)?") }
        if let entry = found.first, !text.isEmpty { return normalized(ICMPMatch(type: entry.type, codes: entry.codes), family) }
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        func number(_ s: String) -> UInt8? { s.isEmpty || !s.allSatisfy({ $0.isASCII && $0.isNumber }) ? nil : UInt8(s) }
        guard let type = number(parts[0]) else { return nil }
        if parts.count == 2 {
            guard let code = number(parts[1]) else { return nil }
            return normalized(ICMPMatch(type: type, codes: code...code), family)
        }
        return normalized(ICMPMatch(type: type), family)
    }

    /// IPv4 type 255 matches every ICMP packet whatever the codes (the kernel's "any").
    static func normalized(_ icmp: ICMPMatch, _ family: IPFamily) -> ICMPMatch {
        family == .v4 && icmp.type == 255 ? ICMPMatch(type: 255, codes: 0...255, inverted: icmp.inverted) : icmp
    }
}

/// What names and texts in a rule may hold: what the kernel stores and the renderer can write
/// and read back.
public enum Names {
    /// An ipset name: 1-31 bytes (IPSET_MAXNAMELEN - 1), no control characters, no quote, no space.
    public static func isValidSetName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 31 && !name.hasPrefix("-") && !name.hasPrefix("!") && isPrintable(name)
            && !name.contains("\"") && !name.contains("'") && !name.contains(" ") && !name.contains("\\")
    }

    /// No control characters (C0, DEL).
    public static func isPrintable(_ text: String) -> Bool {
        !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }
    }
}

/// docknfv's chain naming: the kernel chain that holds docknfv's rules for chain C is `DNFV-C`.
public enum ChainNames {
    public static let prefix = "DNFV-"
    /// XT_EXTENSION_MAXNAMELEN - 1.
    public static let maxKernelLength = 28

    public static func owned(_ chain: String) -> String { prefix + chain }
    public static func isOwned(_ kernelChain: String) -> Bool { kernelChain.hasPrefix(prefix) }
    public static func userChain(ofOwned kernelChain: String) -> String? {
        isOwned(kernelChain) ? String(kernelChain.dropFirst(prefix.count)) : nil
    }

    /// A user chain name docknfv can own: letters, digits, `-`, `_`, `.`, short enough to fit the prefix.
    public static func isValidUserChain(_ name: String) -> Bool { isValidUserChain(name, prefix: prefix) }

    /// As above, for the prefix of another owner's chains in x_tables.
    public static func isValidUserChain(_ name: String, prefix: String) -> Bool {
        !name.isEmpty && name.utf8.count + prefix.utf8.count <= maxKernelLength && !name.hasPrefix("-") && !name.hasPrefix("!")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }
}

extension String {
    func replacingOccurrences(_ target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
