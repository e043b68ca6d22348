import Foundation
import Testing
import RuleEngine
import RuleState

/// A backend that records what it is asked and can be told to refuse; no kernel involved.
final class RecordingBackend: RuleBackend {
    let kind: BackendKind
    var name: String { "recording \(kind.rawValue)" }
    var applied: [(desired: Ruleset, previous: Ruleset)] = []
    var refuseValidation = false

    init(_ kind: BackendKind) { self.kind = kind }

    func validate(_ desired: Ruleset) throws {
        if refuseValidation { throw EngineError(.invalidInput, "refused by the test backend") }
    }
    func apply(_ desired: Ruleset, previous: Ruleset) throws -> ApplyReport {
        applied.append((desired, previous))
        var report = ApplyReport()
        report.committed = desired.tables.map(\.key)
        return report
    }
    func check(_ desired: Ruleset) throws -> [(TableKey, TableDrift)] { [] }
    func remove(_ previous: Ruleset) throws -> Bool { false }
    func namespaceHoldsRules() -> Bool { false }
}

/// Read–modify–apply–save: the backend sees the old and the new ruleset, the state file is written
/// only after the backend took the change, and nothing is applied or written when any step before fails.
@Suite("Rule manager with a recording backend")
struct RuleManagerTests {
    func manager(_ directory: String, _ backend: RecordingBackend, choice: BackendChoice = .iptables) -> RuleManager {
        var manager = RuleManager(store: StateStore(directory: directory), backend: choice)
        manager.makeBackend = { _ in backend }
        return manager
    }

    func rule(_ text: String) throws -> Rule { try RuleParser(family: .v4).parse(text)[0] }

    @Test func aChangeIsAppliedThenSaved() throws {
        try withStateDirectory { directory in
            let backend = RecordingBackend(.iptables)
            let manager = manager(directory, backend)
            let (state, _) = try manager.mutate { try $0.addRules([try rule("-j ACCEPT")], table: .filter, chain: "FORWARD") }
            try manager.mutate { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "INPUT") }
            #expect(backend.applied.count == 2)
            #expect(backend.applied[1].previous == state.ruleset())
            #expect(backend.applied[1].desired.table(TableKey(.v4, .filter))?.chains == ["FORWARD": [try rule("-j ACCEPT")], "INPUT": [try rule("-j DROP")]])
            let saved = try StateStore(directory: directory).load()
            #expect(saved.backend == .iptables)
            #expect(saved.rules.map(\.id) == ["r1", "r2"])
            #expect(saved.touched == [TableKey(.v4, .filter)])
        }
    }

    @Test func aCorruptStateFileStopsEverything() throws {
        try withStateDirectory { directory in
            let backend = RecordingBackend(.iptables)
            let path = directory + "/rules.json"
            try Data("{ corrupt".utf8).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: EngineError.self) {
                try manager(directory, backend).mutate { try $0.addRules([try rule("-j ACCEPT")], table: .filter, chain: "FORWARD") }
            }
            #expect(error?.code == .invalidState)
            #expect(backend.applied.isEmpty)
            #expect(FileManager.default.contents(atPath: path) == Data("{ corrupt".utf8))
        }
    }

    @Test func nothingIsAppliedOrWrittenWhenAStepBeforeFails() throws {
        try withStateDirectory { directory in
            let backend = RecordingBackend(.iptables)
            let manager = manager(directory, backend)
            try manager.mutate { try $0.addRules([try rule("-j ACCEPT")], table: .filter, chain: "FORWARD") }
            let path = directory + "/rules.json"
            let before = FileManager.default.contents(atPath: path)
            // The change itself is refused.
            #expect(throws: EngineError.self) { try manager.mutate { try $0.deleteRule(id: "r9") } }
            // The backend refuses the rules.
            backend.refuseValidation = true
            #expect(throws: EngineError.self) { try manager.mutate { try $0.addRules([try rule("-j DROP")], table: .filter, chain: "FORWARD") } }
            backend.refuseValidation = false
            // A state that could not be read back.
            #expect(throws: EngineError.self) { try manager.mutate { $0.userChains.insert(.init(TableKey(.v4, .filter), "bad name")) } }
            #expect(backend.applied.count == 1)
            #expect(FileManager.default.contents(atPath: path) == before)
        }
    }

    @Test func dryRunValidatesOnly() throws {
        try withStateDirectory { directory in
            let backend = RecordingBackend(.nftables)
            var manager = manager(directory, backend, choice: .nftables)
            manager.dryRun = true
            let (state, report) = try manager.mutate { try $0.addRules([try rule("-j ACCEPT")], table: .filter, chain: "FORWARD") }
            #expect(state.rules.count == 1)
            #expect(report == ApplyReport())
            #expect(backend.applied.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: directory + "/rules.json"))
        }
    }
}
