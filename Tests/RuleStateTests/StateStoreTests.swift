import Foundation
import Testing
import RuleEngine
import RuleState

/// A fresh private directory (mkdtemp: mode 0700) for one test, removed afterwards.
func withStateDirectory<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array((NSTemporaryDirectory() + "dnfvt-state-XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
    let directory = String(cString: made)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try body(directory)
}

/// The state file: atomic JSON, refusing what it cannot read back, never touching a file it
/// cannot read.
@Suite("State store")
struct StateStoreTests {
    func rule(_ text: String, _ family: IPFamily = .v4) throws -> Rule { try RuleParser(family: family).parse(text)[0] }

    /// A state with something of every kind in it.
    func sample() throws -> DesiredState {
        var state = DesiredState()
        try state.createChain("web", TableKey(.v4, .filter))
        try state.createChain("svc6", TableKey(.v6, .filter))
        try state.createSet("blocked", type: .hashNet, family: .v4, entries: ["192.0.2.0/24", "10.9.9.9"])
        try state.createSet("ports6", type: .hashIPPort, family: .v6, entries: ["fd00::1,udp:53"])
        try state.addRules([try rule("-p tcp --dport 80 -j web"), try rule("-m set --match-set blocked src -j DROP")], table: .filter, chain: "FORWARD")
        try state.addRules([try rule("-m comment --comment \"a \\\"quoted\\\" note\" -j ACCEPT")], table: .filter, chain: "web")
        try state.addRules([try rule("-p tcp -j DNAT --to-destination [fd00::5]:80", .v6)], table: .nat, chain: "PREROUTING")
        try state.addRules([try rule("-j ACCEPT", .v6)], table: .filter, chain: "svc6")
        try state.setPolicy("DROP", chain: "FORWARD", TableKey(.v4, .filter))
        try state.deleteRule(id: "r2") // ids need not be contiguous
        state.backend = .nftables
        state.touched = [TableKey(.v4, .filter), TableKey(.v6, .nat), TableKey(.v4, .mangle)]
        return state
    }

    func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test func whatIsSavedLoadsBackEqual() throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory + "/ns")
            #expect(try store.load() == DesiredState()) // nothing saved yet: the empty state
            let state = try sample()
            try store.save(state)
            let loaded = try store.load()
            #expect(loaded == state)
            #expect(loaded.rules.map(\.text) == state.rules.map(\.text))
            #expect(loaded.nextID == 6)
            // The directory is made private, the file readable by its owner only.
            var info = stat()
            #expect(stat(directory + "/ns", &info) == 0 && info.st_mode & 0o777 == 0o700)
            #expect(stat(store.path, &info) == 0 && info.st_mode & 0o777 == 0o600)
            // Saving the loaded state writes the same bytes.
            let first = contents(store.path)
            try store.save(loaded)
            #expect(contents(store.path) == first)
        }
    }

    @Test func theFileIsTheDocumentedFormat() throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory)
            var state = DesiredState()
            try state.addRules([try rule("-p udp --dport 53 -j ACCEPT")], table: .filter, chain: "INPUT")
            state.backend = .iptables
            state.touched = [TableKey(.v4, .filter)]
            try store.save(state)
            let json = try JSONSerialization.jsonObject(with: try #require(contents(store.path))) as? NSDictionary
            let expected: NSDictionary = [
                "version": 1, "backend": "iptables", "nextId": 2, "tables": ["ipv4/filter"], "chains": [], "policies": [], "sets": [],
                "rules": [["id": "r1", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-p udp -m udp --dport 53 -j ACCEPT"]],
            ]
            #expect(json == expected)
        }
    }

    /// Every way a file can be broken: reported as a corrupt state naming the file, and the file
    /// stays byte for byte as it was.
    @Test(arguments: [
        ("{ not json", "not a docknfv state file"),
        ("", "not a docknfv state file"),
        (#"{"version": 2, "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": []}"#, "unknown version 2"),
        (#"{"version": 1, "backend": "pf", "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": []}"#, "unknown backend pf"),
        (#"{"version": 1, "nextId": 1, "tables": ["ipv4/bogus"], "chains": [], "policies": [], "rules": []}"#, "unknown table ipv4/bogus"),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [{"family": "ipv4", "table": "filter", "chain": "bad name"}], "policies": [], "rules": []}"#,
         "invalid chain name \"bad name\""),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [{"family": "ipv4", "table": "filter", "chain": "a-chain-name-far-too-long-for-the-kernel"}], "policies": [], "rules": []}"#,
         "invalid chain name"),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": [{"id": "r1", "family": "ipv4", "table": "filter", "chain": "no/such", "rule": "-j ACCEPT"}]}"#,
         "invalid chain name \"no/such\""),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [{"family": "ipv4", "table": "filter", "chain": "FORWARD", "policy": "REJECT"}], "rules": []}"#,
         "policy of \"FORWARD\""),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [{"family": "ipv4", "table": "filter", "chain": "web", "policy": "DROP"}], "rules": []}"#,
         "policy of \"web\""),
        (#"{"version": 1, "nextId": 1, "sets": [{"name": "bad set", "type": "hash:ip", "family": "ipv4", "entries": []}], "tables": [], "chains": [], "policies": [], "rules": []}"#,
         "invalid set name \"bad set\""),
        (#"{"version": 1, "nextId": 1, "sets": [{"name": "s", "type": "hash:mac", "family": "ipv4", "entries": []}], "tables": [], "chains": [], "policies": [], "rules": []}"#,
         "set s: unknown type or family"),
        (#"{"version": 1, "nextId": 1, "sets": [{"name": "s", "type": "hash:ip", "family": "ipv4", "entries": ["fd00::1"]}], "tables": [], "chains": [], "policies": [], "rules": []}"#,
         "set s: bad element fd00::1"),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": [{"id": "r1", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-j ACCEPT\u0000"}]}"#,
         "rule \"r1\": empty or with control characters"),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": [{"id": "r1", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-j ACCEPT"}, {"id": "r1", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-j DROP"}]}"#,
         "duplicate rule id r1"),
        (#"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": [{"id": "r1", "family": "ipv5", "table": "filter", "chain": "INPUT", "rule": "-j ACCEPT"}]}"#,
         "rule r1: unknown family/table ipv5/filter"),
    ])
    func aCorruptFileIsReportedAndKept(text: String, reason: String) throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory)
            try Data(text.utf8).write(to: URL(fileURLWithPath: store.path))
            let error = #expect(throws: EngineError.self) { try store.load() }
            #expect(error?.code == .invalidState)
            let message = error?.message ?? ""
            #expect(message.hasPrefix("state file \(store.path) is corrupt: "), "\(message)")
            #expect(message.contains(reason), "\(message)")
            #expect(message.hasSuffix("It was left as it is; fix or move it away, then run again"), "\(message)")
            #expect(contents(store.path) == Data(text.utf8))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["rules.json"])
        }
    }

    /// Rule texts are parsed when a backend needs them (a change to one rule among thousands parses
    /// only that one): a stored text that does not parse is reported as an invalid state then, and
    /// the file is kept.
    @Test func aStoredRuleThatDoesNotParseIsReportedWhenUsed() throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory)
            let text = #"{"version": 1, "nextId": 1, "tables": [], "chains": [], "policies": [], "rules": [{"id": "r1", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-p tcp --dport 99999 -j ACCEPT"}]}"#
            try Data(text.utf8).write(to: URL(fileURLWithPath: store.path))
            let state = try store.load()
            let error = #expect(throws: EngineError.self) { try state.rules[0].rule() }
            #expect(error?.code == .invalidState)
            #expect(error?.message.contains("stored rule \"-p tcp --dport 99999 -j ACCEPT\" cannot be read") == true, "\(String(describing: error))")
            #expect(contents(store.path) == Data(text.utf8))
        }
    }

    @Test func nextIdNeverReissuesAnIdInTheFile() throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory)
            // nextId says 2, but r7 is taken: the next id is r8.
            let text = #"{"version": 1, "nextId": 2, "tables": [], "chains": [], "policies": [], "rules": [{"id": "r7", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-j ACCEPT"}, {"id": "custom", "family": "ipv4", "table": "filter", "chain": "INPUT", "rule": "-j DROP"}]}"#
            try Data(text.utf8).write(to: URL(fileURLWithPath: store.path))
            var state = try store.load()
            #expect(state.nextID == 8)
            #expect(try state.addRules([try rule("-j RETURN")], table: .filter, chain: "INPUT").map(\.id) == ["r8"])
            // A nextId above every id is kept.
            let ahead = text.replacingOccurrences(of: #""nextId": 2"#, with: #""nextId": 40"#)
            try Data(ahead.utf8).write(to: URL(fileURLWithPath: store.path))
            #expect(try store.load().nextID == 40)
        }
    }

    /// A state with a name that could not be read back (it would lock every later command out)
    /// is refused before anything is written; the previous file stays.
    @Test func aStateThatCannotBeReadBackIsNeverWritten() throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory)
            let good = try sample()
            try store.save(good)
            let before = contents(store.path)
            var badChain = good
            badChain.userChains.insert(.init(TableKey(.v4, .filter), "bad name")) // bypasses createChain's check
            var badSet = good
            badSet.sets["bad set"] = SetSpec(type: .hashIP, family: .v4)
            var badPolicy = good
            badPolicy.policies[.init(TableKey(.v4, .filter), "FORWARD")] = "MAYBE"
            for (state, reason) in [(badChain, "invalid chain name \"bad name\""), (badSet, "invalid set name \"bad set\""), (badPolicy, "policy of \"FORWARD\"")] {
                let error = #expect(throws: EngineError.self) { try store.save(state) }
                #expect(error?.code == .invalidState)
                #expect(error?.message.contains(reason) == true, "\(String(describing: error))")
                #expect(contents(store.path) == before)
                #expect(try store.load() == good)
            }
            // Not even a first file is created.
            let fresh = StateStore(directory: directory + "/fresh")
            #expect(throws: EngineError.self) { try fresh.save(badChain) }
            #expect(!FileManager.default.fileExists(atPath: fresh.path))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["rules.json"])
        }
    }

    @Test func aDirectoryOthersCanWriteIsRefused() throws {
        try withStateDirectory { directory in
            let store = StateStore(directory: directory)
            try store.save(try sample())
            chmod(directory, 0o777)
            defer { chmod(directory, 0o700) }
            #expect(throws: EngineError.self) { try store.load() }
            #expect(throws: EngineError.self) { try store.save(DesiredState()) }
            #expect(throws: EngineError.self) { try store.lockedForReading { 1 } }
            #expect(throws: EngineError.self) { try store.locked { 1 } }
        }
    }

    @Test func aRelativeDirectoryIsRefused() throws {
        let store = StateStore(directory: "relative/dir")
        let loading = #expect(throws: EngineError.self) { try store.load() }
        #expect(loading?.code == .io)
        let saving = #expect(throws: EngineError.self) { try store.save(DesiredState()) }
        #expect(saving?.code == .io)
        #expect(!FileManager.default.fileExists(atPath: "relative"))
    }
}
