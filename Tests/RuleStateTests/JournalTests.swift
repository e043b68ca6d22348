import Foundation
import Testing
import RuleEngine
@testable import RuleState

/// A backend that can append against a kernel mark, as nftables does: each change moves a
/// generation counter on, and an append is done only while the mark is the last one it gave.
final class AppendingBackend: RuleBackend {
    let kind = BackendKind.nftables
    var name: String { "appending test backend" }
    var generation: UInt32 = 1
    var applied = 0
    var appended: [[AppendedRule]] = []
    /// Something else changed the kernel: the next append finds another generation.
    func foreignChange() { generation += 1 }
    var refuse: String?

    var mark: KernelMark { KernelMark(namespace: 7, generation: generation) }

    func validate(_ desired: Ruleset) throws {
        for table in desired.tables { for entries in table.entries.values { for entry in entries where entry.text.contains(refuse ?? "\u{0}") {
            throw EngineError(.invalidInput, "refused \(entry.text)")
        } } }
    }
    func apply(_ desired: Ruleset, previous: Ruleset) throws -> ApplyReport {
        applied += 1
        generation += 1
        var report = ApplyReport()
        report.kernelMark = mark
        return report
    }
    func append(_ rules: [AppendedRule], owner: Owner, sets: [String: SetSpec], mark: KernelMark?) throws -> ApplyReport? {
        guard mark == self.mark else { return nil }
        appended.append(rules)
        generation += 1
        var report = ApplyReport()
        report.kernelMark = self.mark
        report.kernelRead = false
        return report
    }
    func check(_ desired: Ruleset) throws -> [(TableKey, TableDrift)] { [] }
    func remove(_ previous: Ruleset) throws -> Bool { false }
    func namespaceHoldsRules() -> Bool { false }
}

/// `rule add` at a chain's end through the journal: one line per append, no read or rewrite of
/// the other rules, and a state that loads exactly as if every change had been saved whole.
@Suite("State journal")
struct JournalTests {
    func rule(_ text: String) throws -> Rule { try RuleParser(family: .v4).parse(text)[0] }

    /// A manager over `directory` whose state already holds `count` FORWARD rules.
    func seeded(_ directory: String, _ backend: AppendingBackend, count: Int = RuleManager.journalFrom) throws -> RuleManager {
        var manager = RuleManager(store: StateStore(directory: directory), backend: .nftables)
        manager.makeBackend = { _ in backend }
        let rules = try (0..<count).map { try rule("-s 10.0.\($0 / 256).\($0 % 256)/32 -j ACCEPT") }
        var state = DesiredState()
        try state.addRules(rules, table: .filter, chain: "FORWARD")
        try manager.mutate { $0 = state }
        return manager
    }

    func lines(_ path: String) -> [String] {
        (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) ?? []
    }

    @Test func appendsAreJournalLinesAndLoadAsIfSavedWhole() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            let snapshot = try Data(contentsOf: URL(fileURLWithPath: directory + "/rules.json"))
            var results: [[StoredRule]] = []
            for port in [53, 54, 55] {
                results.append(try manager.append([try rule("-p udp -m udp --dport \(port) -j ACCEPT")], table: .filter, chain: "FORWARD").added)
            }
            #expect(results.map { $0.map(\.id) } == [["r201"], ["r202"], ["r203"]])
            #expect(backend.applied == 1, "only the seeding went through a whole apply")
            #expect(backend.appended.map { $0.map(\.entry.text) } == [["-p udp -m udp --dport 53 -j ACCEPT"], ["-p udp -m udp --dport 54 -j ACCEPT"], ["-p udp -m udp --dport 55 -j ACCEPT"]])
            #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/rules.json")) == snapshot, "the state file is not rewritten")
            #expect(lines(directory + "/rules.journal").count == 5, "header, three records, and the final newline")

            // The same changes saved whole, in another directory, load the same.
            try withStateDirectory { other in
                let wholeBackend = AppendingBackend()
                let whole = try seeded(other, wholeBackend)
                for port in [53, 54, 55] {
                    try whole.mutate { try $0.addRules([try rule("-p udp -m udp --dport \(port) -j ACCEPT")], table: .filter, chain: "FORWARD") }
                }
                let a = try StateStore(directory: directory).load(), b = try StateStore(directory: other).load()
                #expect(a.rules == b.rules)
                #expect(a.nextID == b.nextID && a.nextID == 204)
                #expect(a.backend == .nftables)
                #expect(a.userChains == b.userChains && a.touched == b.touched)
            }
            #expect(try StateStore(directory: directory).load().kernelMark == backend.mark)
        }
    }

    @Test func aWholeSaveFoldsTheJournalIn() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            try manager.append([try rule("-p tcp -m tcp --dport 80 -j ACCEPT")], table: .filter, chain: "FORWARD")
            try manager.mutate { try $0.deleteRule(id: "r1") }
            // A new journal for the new file: its header only.
            #expect(lines(directory + "/rules.journal").count == 2)
            let saved = try StateStore.decode(Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/rules.json"))), path: "rules.json")
            #expect(saved.rules.count == RuleManager.journalFrom)
            #expect(saved.rules.last?.id == "r201")
            try manager.append([try rule("-p tcp -m tcp --dport 81 -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(backend.appended.count == 2)
            #expect(try StateStore(directory: directory).load().rules.last?.text == "-p tcp -m tcp --dport 81 -j ACCEPT")
        }
    }

    @Test func anUnfinishedLastLineIsNotPartOfTheStateAndIsReplaced() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            try manager.append([try rule("-p tcp -m tcp --dport 80 -j ACCEPT")], table: .filter, chain: "FORWARD")
            let before = try StateStore(directory: directory).load()
            let handle = try #require(FileHandle(forWritingAtPath: directory + "/rules.journal"))
            handle.seekToEndOfFile()
            handle.write(Data(#"{"add":[["r202","ipv4","filter","FORWARD","-j DR"#.utf8))
            handle.closeFile()
            #expect(try StateStore(directory: directory).load() == before)
            // The next append saves the whole state (and so drops the unfinished line).
            try manager.append([try rule("-p tcp -m tcp --dport 81 -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(backend.applied == 2 && backend.appended.count == 1)
            let after = try StateStore(directory: directory).load()
            #expect(after.rules.suffix(2).map(\.text) == ["-p tcp -m tcp --dport 80 -j ACCEPT", "-p tcp -m tcp --dport 81 -j ACCEPT"])
            #expect(!lines(directory + "/rules.journal").contains { $0.contains("-j DR") })
        }
    }

    @Test func aJournalOfAnEarlierStateFileIsIgnored() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            try manager.append([try rule("-p tcp -m tcp --dport 80 -j ACCEPT")], table: .filter, chain: "FORWARD")
            let old = try Data(contentsOf: URL(fileURLWithPath: directory + "/rules.journal"))
            try manager.mutate { try $0.deleteRule(id: "r201") }
            // As if the command was killed between writing the state file and the new journal.
            try old.write(to: URL(fileURLWithPath: directory + "/rules.journal"))
            let state = try StateStore(directory: directory).load()
            #expect(!state.rules.contains { $0.id == "r201" })
            // An append does not extend it either: it goes the whole way.
            try manager.append([try rule("-p tcp -m tcp --dport 81 -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(backend.appended.count == 1)
            #expect(try StateStore(directory: directory).load().rules.suffix(1).map(\.id) == ["r202"])
        }
    }

    @Test func aCorruptJournalIsReportedAndKept() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            try manager.append([try rule("-p tcp -m tcp --dport 80 -j ACCEPT")], table: .filter, chain: "FORWARD")
            var text = try String(contentsOfFile: directory + "/rules.journal", encoding: .utf8)
            text = text.replacingOccurrences(of: "\"r201\"", with: "\"r 201\"")
            try text.write(toFile: directory + "/rules.journal", atomically: false, encoding: .utf8)
            let error = #expect(throws: EngineError.self) { try StateStore(directory: directory).load() }
            #expect(error?.code == .invalidState)
            #expect(error?.message.contains("rules.journal") == true)
            #expect(error?.message.contains("r 201") == true)
            #expect(throws: EngineError.self) {
                try manager.append([try rule("-p tcp -m tcp --dport 81 -j ACCEPT")], table: .filter, chain: "FORWARD")
            }
            #expect(try String(contentsOfFile: directory + "/rules.journal", encoding: .utf8) == text)
            #expect(backend.appended.count == 1)
        }
    }

    @Test func whatAnAppendCannotShortcutTakesTheWholePath() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            try manager.mutate { try $0.createChain("MINE", TableKey(.v4, .filter)) }
            try manager.mutate { try $0.createSet("friends", type: .hashIP, family: .v4) }
            var wholeApplies = backend.applied, added = 0
            // A chain without rules yet, a user chain, a jump, a set, a table with nothing in it, the other family.
            let cases: [(Rule, NetfilterTable, String)] = [
                (try rule("-j ACCEPT"), .filter, "INPUT"),
                (try rule("-j ACCEPT"), .filter, "MINE"),
                (try rule("-j MINE"), .filter, "FORWARD"),
                (try rule("-m set --match-set nosuch src -j ACCEPT"), .filter, "FORWARD"),
                (try rule("-j MASQUERADE"), .nat, "POSTROUTING"),
                (try RuleParser(family: .v6).parse("-s ::1/128 -j ACCEPT")[0], .filter, "FORWARD"),
            ]
            for (rule, table, chain) in cases {
                do { try manager.append([rule], table: table, chain: chain) } catch {
                    // The unknown set is refused by the whole path with its usual message.
                    #expect(RuleRenderer.render(rule).contains("nosuch"), "\(error)")
                    continue
                }
                wholeApplies += 1
                added += 1
                #expect(backend.applied == wholeApplies, "\(RuleRenderer.render(rule)) took the whole path")
            }
            #expect(backend.appended.isEmpty)
            // A set the state knows is fine; so is FORWARD again.
            try manager.append([try rule("-m set --match-set friends src -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(backend.appended.count == 1)
            let state = try StateStore(directory: directory).load()
            #expect(state.rules.filter { $0.chain == "FORWARD" }.last?.text == "-m set --match-set friends src -j ACCEPT")
            #expect(added >= 5)
            #expect(state.rules.count == RuleManager.journalFrom + added + 1)
        }
    }

    @Test func aChangeByAnotherWriterTakesTheWholePath() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            backend.foreignChange()
            try manager.append([try rule("-p tcp -m tcp --dport 80 -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(backend.appended.isEmpty && backend.applied == 2)
            try manager.append([try rule("-p tcp -m tcp --dport 81 -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(backend.appended.count == 1)
        }
    }

    @Test func aRefusedRuleChangesNothing() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend)
            let journal = try Data(contentsOf: URL(fileURLWithPath: directory + "/rules.journal"))
            backend.refuse = "--dport 81"
            let error = #expect(throws: EngineError.self) {
                try manager.append([try rule("-p tcp -m tcp --dport 81 -j ACCEPT")], table: .filter, chain: "FORWARD")
            }
            #expect(error?.message == "refused -p tcp -m tcp --dport 81 -j ACCEPT")
            #expect(backend.appended.isEmpty && backend.applied == 1)
            #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/rules.journal")) == journal)
        }
    }

    @Test func smallStatesKeepNoJournal() throws {
        try withStateDirectory { directory in
            let backend = AppendingBackend()
            let manager = try seeded(directory, backend, count: 3)
            try manager.append([try rule("-p tcp -m tcp --dport 80 -j ACCEPT")], table: .filter, chain: "FORWARD")
            #expect(!FileManager.default.fileExists(atPath: directory + "/rules.journal"))
            #expect(backend.applied == 2)
            #expect(try StateStore(directory: directory).load().rules.count == 4)
        }
    }
}
