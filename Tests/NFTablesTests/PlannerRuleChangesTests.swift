@testable import NFTables
import RuleEngine
import Testing
import TestSupport

/// The planner's rule changes, replayed on a model of the kernel's chain (handles, inserts before
/// or after a handle, appends, deletes): for random edits of random chains, the chain becomes
/// exactly the desired one, and a single edit costs a single operation.
@Suite("nftables planner: rule changes replayed")
struct PlannerRuleChangesTests {
    struct Kernel {
        var rules: [(handle: UInt64, fingerprint: UInt64)] = []
        var next: UInt64 = 1
        mutating func apply(_ gone: [UInt64], _ added: [(DesiredTable.DesiredRule, Operation.Position)]) {
            rules.removeAll { gone.contains($0.handle) }
            for (rule, position) in added {
                let new = (handle: next, fingerprint: rule.fingerprint)
                next += 1
                switch position {
                case .end: rules.append(new)
                case .after(let handle): rules.insert(new, at: rules.firstIndex { $0.handle == handle }! + 1)
                case .before(let handle): rules.insert(new, at: rules.firstIndex { $0.handle == handle }!)
                }
            }
        }
    }

    static let entry = RuleEntry(text: "-j ACCEPT", family: .v4, trusted: true)
    static func desired(_ fingerprints: [UInt64]) -> [DesiredTable.DesiredRule] {
        fingerprints.enumerated().map { DesiredTable.DesiredRule(fingerprint: $0.element, entry: entry, table: .filter, index: $0.offset) }
    }

    @Test func randomEditsReachTheDesiredChain() {
        var rng = SeededGenerator(seed: SeededGenerator.seed(for: "randomEditsReachTheDesiredChain", fallback: 7))
        var kernel = Kernel()
        var chain: [UInt64] = []
        for round in 0..<2000 {
            var want = chain
            let edits = round % 10 == 0 ? Int.random(in: 2...6, using: &rng) : 1
            for _ in 0..<edits {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: want.insert(UInt64.random(in: 1...40, using: &rng), at: Int.random(in: 0...want.count, using: &rng))
                case 1 where !want.isEmpty: want.remove(at: Int.random(in: 0..<want.count, using: &rng))
                case 2 where want.count > 1: want.swapAt(Int.random(in: 0..<want.count, using: &rng), Int.random(in: 0..<want.count, using: &rng))
                default: want.append(UInt64.random(in: 1...40, using: &rng)) // repeated fingerprints included
                }
            }
            let have = kernel.rules.map { Snapshot.KernelRule(handle: $0.handle, fingerprint: $0.fingerprint) }
            let (gone, added) = Planner.ruleChanges(want: Self.desired(want), have: have)
            kernel.apply(gone, added)
            #expect(kernel.rules.map(\.fingerprint) == want, "round \(round)")
            chain = want
        }
    }

    @Test func oneEditAmongThousandsIsOneOperation() {
        var kernel = Kernel()
        let base = (0..<10_000).map { UInt64($0 + 1) }
        kernel.apply([], Self.desired(base).map { ($0, .end) })
        var want = base
        want.insert(99_999, at: 5000)
        var (gone, added) = Planner.ruleChanges(want: Self.desired(want), have: kernel.rules.map { .init(handle: $0.handle, fingerprint: $0.fingerprint) })
        #expect(gone.isEmpty && added.count == 1)
        kernel.apply(gone, added)
        #expect(kernel.rules.map(\.fingerprint) == want)
        want.remove(at: 7000)
        (gone, added) = Planner.ruleChanges(want: Self.desired(want), have: kernel.rules.map { .init(handle: $0.handle, fingerprint: $0.fingerprint) })
        #expect(gone.count == 1 && added.isEmpty)
        kernel.apply(gone, added)
        #expect(kernel.rules.map(\.fingerprint) == want)
    }
}

@Suite("nftables planner: set element changes; validation carried over")
struct PlannerElementChangesTests {
    static func entries(_ texts: [String]) -> [SetEntry] { texts.map { SetEntry($0, type: .hashIP)! } }

    @Test(arguments: [(["10.0.0.1", "10.0.0.2", "10.0.0.3"], ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], [], ["10.0.0.4"]),
                      (["10.0.0.1", "10.0.0.2", "10.0.0.3"], ["10.0.0.1", "10.0.0.3"], ["10.0.0.2"], []),
                      (["10.0.0.1", "10.0.0.2", "10.0.0.3"], ["10.0.0.3", "10.0.0.1", "10.0.0.2"], [], []),
                      (["10.0.0.1", "10.0.0.2"], ["10.0.0.9", "10.0.0.2"], ["10.0.0.1"], ["10.0.0.9"])])
    func smallChanges(have: [String], want: [String], gone: [String], new: [String]) {
        let result = Planner.elementChanges(have: Self.entries(have), want: Self.entries(want))
        #expect(result.gone == Self.entries(gone) && result.new == Self.entries(new), "an element that moved is neither deleted nor added")
    }

    @Test func largeChangesAgreeWithSetDifferences() {
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<200 {
            let have = (0..<Int.random(in: 0...40, using: &rng)).map { _ in "10.0.0.\(Int.random(in: 1...60, using: &rng))" }
            var want = have
            for _ in 0..<Int.random(in: 0...12, using: &rng) {
                if Bool.random(using: &rng), !want.isEmpty { want.remove(at: Int.random(in: 0..<want.count, using: &rng)) } else {
                    want.insert("10.0.0.\(Int.random(in: 1...60, using: &rng))", at: Int.random(in: 0...want.count, using: &rng))
                }
            }
            let (gone, new) = Planner.elementChanges(have: Self.entries(have), want: Self.entries(want))
            #expect(Set(gone) == Set(Self.entries(have)).subtracting(Self.entries(want)))
            #expect(Set(new) == Set(Self.entries(want)).subtracting(Self.entries(have)))
        }
    }

    /// An entry checked in one chain is checked again when it moves to another.
    @Test func aCarriedOverEntryIsCheckedAgainInAnotherChain() throws {
        let entry = RuleEntry(try RuleParser(family: .v4).parse("-o eth0 -j ACCEPT")[0])
        try Ruleset(tables: [TableRules(family: .v4, table: .filter, entries: ["FORWARD": [entry]])]).validate()
        #expect(throws: EngineError.self) { try Ruleset(tables: [TableRules(family: .v4, table: .filter, entries: ["INPUT": [entry]])]).validate() }
        try Ruleset(tables: [TableRules(family: .v4, table: .filter, entries: ["FORWARD": [entry]])]).validate()
    }
}
