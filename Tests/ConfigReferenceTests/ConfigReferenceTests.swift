import Agent
import CNIPlugin
import DHCPHook
import Foundation
import InitSupervisor
import TestSupport
import Testing

/// docs/config-reference.md documents every key of every configuration. Its tables are checked
/// against what the code accepts — the key lists the decoders themselves use — and against the
/// variables the images' scripts read, in both directions: a key the code accepts that the
/// reference leaves out fails, and so does a documented key the code does not accept.
@Suite("Configuration reference matches the code")
struct ConfigReferenceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let referencePath = "docs/config-reference.md"

    static func reference() throws -> ReferenceDocument {
        try ReferenceDocument(String(contentsOf: root.appendingPathComponent(referencePath), encoding: .utf8))
    }

    @Test func everyCheckedTableIsThere() throws {
        let document = try Self.reference()
        for name in ["cni", "cni-args", "init", "agent", "hook", "dhclient", "docknfvctl", "image:dockwall", "image:dockvpn"] {
            #expect(!document.rows(name).isEmpty, "\(Self.referencePath) has no table marked <!-- keys: \(name) -->")
        }
    }

    /// Every documented key has its type, default and meaning (or constraint) filled in.
    @Test func everyEntryIsComplete() throws {
        let document = try Self.reference()
        for table in document.tables {
            for column in ["type", "default", "meaning"] {
                guard let index = table.column(column) else {
                    Issue.record("table <!-- keys: \(table.name) --> has no \"\(column)\" column")
                    continue
                }
                for row in table.rows where index >= row.count || row[index].isEmpty {
                    Issue.record("table \(table.name): `\(row.first ?? "")` has no \(column)")
                }
            }
        }
    }

    @Test func cniPlugin() throws {
        let document = try Self.reference()
        let accepted = ConfigObject.allCases.flatMap { object in object.keys.map { Self.join(object.path, $0) } }
        expectSame("CNI plugin config", documented: document.names("cni"), accepted: accepted, by: "CNIPlugin.ConfigObject")
        expectSame("CNI plugin CNI_ARGS", documented: document.names("cni-args"), accepted: CNIArgKey.allCases.map(\.rawValue),
                   by: "CNIPlugin.CNIArgKey")
    }

    /// The code's own key lists hang together: every object stands under a key its parent accepts.
    @Test func cniObjectsHangTogether() {
        let accepted = Set(ConfigObject.allCases.flatMap { object in object.keys.map { Self.join(object.path, $0) } })
        for object in ConfigObject.allCases where !object.path.isEmpty {
            let key = object.path.hasSuffix("[]") ? String(object.path.dropLast(2)) : object.path
            #expect(accepted.contains(key), "ConfigObject \(object) stands at \(object.path), but no object accepts the key \(key)")
        }
    }

    @Test func docknfvInit() throws {
        let document = try Self.reference()
        let fileKeys = InitConfig.fileKeys.flatMap { object in object.keys.map { Self.join(object.path, $0) } }
        expectSame("docknfv-init file", documented: document.names("init", column: 0), accepted: fileKeys, by: "InitConfig.fileKeys (the decoder's coding keys)")
        let variables = InitConfig.Setting.allCases.map(\.variable)
        expectSame("docknfv-init environment", documented: document.names("init", column: 1), accepted: variables, by: "InitConfig.Setting")
        for row in document.rows("init") {
            guard let field = ReferenceDocument.code(row[0]), let setting = InitConfig.Setting(rawValue: field) else { continue }
            #expect(ReferenceDocument.code(row[1]) == setting.variable,
                    "docknfv-init: the reference pairs \(field) with \(row[1]); the code reads \(setting.variable)")
        }
    }

    @Test func agent() throws {
        let document = try Self.reference()
        expectSame("docknfv-agent config", documented: document.names("agent"), accepted: Array(AgentConfig.keys), by: "AgentConfig.keys")
    }

    @Test func dhcpHook() throws {
        let document = try Self.reference()
        let wrapper = try Self.shellVariables(Self.root.appendingPathComponent("scripts/dhclient-exit-hook"))
        expectSame("docknfv-dhcp-hook environment", documented: document.names("hook", column: 0),
                   accepted: HookSetting.allCases.map(\.variable) + wrapper, by: "HookSetting and scripts/dhclient-exit-hook")
        let options = HookSetting.allCases.map { "--" + $0.option }
        expectSame("docknfv-dhcp-hook options", documented: document.names("hook", column: 1), accepted: options, by: "HookSetting")
        for row in document.rows("hook") {
            guard let variable = ReferenceDocument.code(row[0]), let setting = HookSetting.allCases.first(where: { $0.variable == variable }) else { continue }
            #expect(ReferenceDocument.code(row[1]) == "--" + setting.option,
                    "docknfv-dhcp-hook: the reference pairs \(variable) with \(row[1]); the code with --\(setting.option)")
        }
        // What the executable really declares (a flag added without a HookSetting shows here).
        let help = try runCommand([TestEnv.binary("docknfv-dhcp-hook"), "--help"])
        let declared = Self.longOptions(help.stdout).filter { $0 != "--help" && $0 != "--version" }
        expectSame("docknfv-dhcp-hook options", documented: document.names("hook", column: 1), accepted: declared, by: "docknfv-dhcp-hook --help")
    }

    @Test func dhclientVariables() throws {
        let document = try Self.reference()
        expectSame("dhclient variables read by docknfv-dhcp-hook", documented: document.names("dhclient"), accepted: DHClientVariable.all,
                   by: "DHClientVariable.all")
    }

    /// docknfvctl is a Foundation-free executable; its environment is read in one place.
    @Test func docknfvctlEnvironment() throws {
        let document = try Self.reference()
        let directory = Self.root.appendingPathComponent("Sources/docknfvctl")
        var read: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for match in text.matches(of: try Regex(#"Process\.environment\("([A-Z0-9_]+)"\)"#)) {
                if let name = match.output[1].substring { read.append(String(name)) }
            }
        }
        #expect(!read.isEmpty)
        expectSame("docknfvctl environment", documented: document.names("docknfvctl"), accepted: read, by: "Sources/docknfvctl")
    }

    /// The images' environment is what their start scripts read; what their Dockerfiles preset is
    /// mentioned too.
    @Test(arguments: ["dockwall", "dockvpn"])
    func imageEnvironment(image: String) throws {
        let document = try Self.reference()
        let directory = Self.root.appendingPathComponent("images/\(image)")
        var read: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() {
            let url = directory.appendingPathComponent(file)
            guard let text = try? String(contentsOf: url, encoding: .utf8), text.hasPrefix("#!") else { continue }
            read += try Self.shellVariables(url)
        }
        #expect(!read.isEmpty, "no start script found in images/\(image)")
        expectSame("\(image) image environment", documented: document.names("image:\(image)"), accepted: read, by: "the scripts in images/\(image)")
        let dockerfile = try String(contentsOf: directory.appendingPathComponent("Dockerfile"), encoding: .utf8)
        for match in dockerfile.matches(of: try Regex(#"(?m)^ENV\s+([A-Z0-9_]+)="#)) {
            let name = String(match.output[1].substring ?? "")
            #expect(document.text.contains("`\(name)"), "images/\(image)/Dockerfile presets \(name); \(Self.referencePath) does not mention it")
        }
    }

    // MARK: helpers

    func expectSame(_ config: String, documented: [String], accepted: [String], by source: String,
                    sourceLocation: SourceLocation = #_sourceLocation) {
        let doc = Set(documented), code = Set(accepted)
        for key in doc.sorted() where documented.filter({ $0 == key }).count > 1 {
            Issue.record("\(config): \(key) is documented more than once in \(Self.referencePath)", sourceLocation: sourceLocation)
        }
        for key in code.subtracting(doc).sorted() {
            Issue.record("\(config): \(key) is accepted by the code (\(source)) but not documented in \(Self.referencePath)", sourceLocation: sourceLocation)
        }
        for key in doc.subtracting(code).sorted() {
            Issue.record("\(config): \(key) is documented in \(Self.referencePath) but not accepted by the code (\(source))", sourceLocation: sourceLocation)
        }
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// Upper-case variables a shell script reads (`$NAME`, `${NAME…}`), comment lines left out.
    static func shellVariables(_ url: URL) throws -> [String] {
        let text = try String(contentsOf: url, encoding: .utf8)
        let pattern = try Regex(#"\$\{?([A-Z][A-Z0-9_]*)"#)
        var out: [String] = []
        for line in text.split(separator: "\n") where !line.drop(while: { $0 == " " }).hasPrefix("#") {
            for match in line.matches(of: pattern) {
                if let name = match.output[1].substring, !out.contains(String(name)) { out.append(String(name)) }
            }
        }
        return out
    }

    /// `--name` options of an ArgumentParser help text's option lines.
    static func longOptions(_ help: String) -> [String] {
        var out: [String] = []
        for line in help.split(separator: "\n") {
            let trimmed = line.drop(while: { $0 == " " })
            for word in trimmed.split(separator: " ").prefix(2) where word.hasPrefix("--") {
                let name = String(word.prefix { $0 != "," && $0 != "=" })
                if !out.contains(name) { out.append(name) }
            }
        }
        return out
    }
}

/// The tables of the reference that a `<!-- keys: NAME -->` line marks.
struct ReferenceDocument {
    struct Table {
        var name: String
        var header: [String]
        var rows: [[String]]
        func column(_ word: String) -> Int? { header.firstIndex { $0.lowercased().contains(word) } }
    }

    let text: String
    private(set) var tables: [Table] = []

    init(_ text: String) {
        self.text = text
        var pending: String?
        var current: Table?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("<!-- keys:"), trimmed.hasSuffix("-->") {
                if let table = current { tables.append(table); current = nil }
                pending = trimmed.dropFirst("<!-- keys:".count).dropLast(3).trimmingCharacters(in: .whitespaces)
                continue
            }
            if trimmed.hasPrefix("|") {
                let cells = Self.cells(trimmed)
                if let name = pending {
                    current = Table(name: name, header: cells, rows: [])
                    pending = nil
                } else if current != nil, !cells.allSatisfy({ $0.allSatisfy { "-: ".contains($0) } }) {
                    current!.rows.append(cells)
                }
                continue
            }
            if let table = current { tables.append(table); current = nil }
        }
        if let table = current { tables.append(table) }
    }

    func rows(_ name: String) -> [[String]] { tables.filter { $0.name == name }.flatMap(\.rows) }

    /// The key named in `column` of each row (a row whose cell holds no `code` names none).
    func names(_ name: String, column: Int = 0) -> [String] {
        rows(name).compactMap { $0.count > column ? Self.code($0[column]) : nil }
    }

    /// The first `code` span of a cell.
    static func code(_ cell: String) -> String? {
        let parts = cell.split(separator: "`", omittingEmptySubsequences: false)
        return parts.count >= 3 ? String(parts[1]) : nil
    }

    /// A table line's cells; `\|` is a pipe inside a cell.
    static func cells(_ line: String) -> [String] {
        var cells: [String] = [], cell = "", escaped = false
        for character in line.dropFirst() {
            if escaped { cell.append(character); escaped = false; continue }
            if character == "\\" { escaped = true; cell.append(character); continue }
            if character == "|" { cells.append(cell.trimmingCharacters(in: .whitespaces)); cell = ""; continue }
            cell.append(character)
        }
        return cells
    }
}
