import Foundation
import Testing
import RuleEngine
import RuleState

/// `auto` and explicit backend choices, with the namespace probes and the system's `iptables`
/// command replaced: the order is recorded state, then the one kind of rules the namespace holds,
/// then the variant of `iptables` (from its symlink chain, as update-alternatives makes it).
/// What a selection should be (BackendSelection's memberwise initialiser is internal).
struct Picked: Equatable, CustomStringConvertible {
    var kind: BackendKind, reason: String
    init(_ kind: BackendKind, _ reason: String) { self.kind = kind; self.reason = reason }
    init(_ selection: BackendSelection) { self.init(selection.kind, selection.reason) }
    var description: String { "\(kind.rawValue) (\(reason))" }
}

@Suite("Backend selection")
struct BackendSelectorTests {
    /// A selector whose probes report `legacy` / `nft`, and whose `iptables` is a symlink chain in
    /// `directory` ending in `target` (nil: no iptables command at all).
    func selector(legacy: Bool, nft: Bool, in directory: String, iptablesTarget target: String?) throws -> BackendSelector {
        var selector = BackendSelector()
        selector.legacyHoldsRules = { legacy }
        selector.nftablesHoldsRules = { nft }
        selector.legacyUsable = { true }
        let command = directory + "/iptables"
        if let target {
            // iptables -> /etc/alternatives-like link -> the multi-call binary, as Debian has it.
            let binary = directory + "/" + target, alternative = directory + "/alternatives-iptables"
            FileManager.default.createFile(atPath: binary, contents: Data("#!/bin/sh\n".utf8))
            try FileManager.default.createSymbolicLink(atPath: alternative, withDestinationPath: binary)
            try FileManager.default.createSymbolicLink(atPath: command, withDestinationPath: alternative)
        }
        selector.iptablesPaths = [directory + "/missing/iptables", command]
        return selector
    }

    /// A selector whose probes must not be asked (the recorded backend or the explicit choice decides).
    var unprobed: BackendSelector {
        var selector = BackendSelector()
        selector.legacyHoldsRules = { Issue.record("legacy probe asked"); return false }
        selector.nftablesHoldsRules = { Issue.record("nftables probe asked"); return false }
        selector.iptablesPaths = []
        return selector
    }

    @Test(arguments: BackendKind.allCases)
    func theRecordedBackendIsKept(kind: BackendKind) throws {
        let selection = try unprobed.select(.auto, recorded: kind, stateHasRules: true)
        #expect(Picked(selection) == Picked(kind, "docknfv's state here uses it"))
    }

    @Test func aRecordedBackendWithNothingInTheStateDecidesNothing() throws {
        try withStateDirectory { directory in
            let selection = try selector(legacy: true, nft: false, in: directory, iptablesTarget: "xtables-nft-multi")
                .select(.auto, recorded: .nftables, stateHasRules: false)
            #expect(Picked(selection) == Picked(.iptables, "this namespace holds only legacy x_tables rules"))
        }
    }

    @Test func theOneKindOfRulesTheNamespaceHoldsWins() throws {
        try withStateDirectory { directory in
            // The system variant says the opposite each time: the namespace's rules decide.
            let legacy = try selector(legacy: true, nft: false, in: directory, iptablesTarget: "xtables-nft-multi").select(.auto, recorded: nil, stateHasRules: false)
            #expect(Picked(legacy) == Picked(.iptables, "this namespace holds only legacy x_tables rules"))
        }
        try withStateDirectory { directory in
            let nft = try selector(legacy: false, nft: true, in: directory, iptablesTarget: "xtables-legacy-multi").select(.auto, recorded: nil, stateHasRules: false)
            #expect(Picked(nft) == Picked(.nftables, "this namespace holds only nf_tables rules"))
        }
    }

    @Test(arguments: [
        (false, "xtables-legacy-multi", BackendKind.iptables, "this namespace holds no rules yet and the system's iptables is the legacy variant"),
        (false, "xtables-nft-multi", .nftables, "this namespace holds no rules yet and the system's iptables is the nf_tables variant"),
        (true, "xtables-legacy-multi", .iptables, "this namespace holds both kinds of rules and the system's iptables is the legacy variant"),
        (true, "xtables-nft-multi", .nftables, "this namespace holds both kinds of rules and the system's iptables is the nf_tables variant"),
        (false, "iptables-legacy", .iptables, "this namespace holds no rules yet and the system's iptables is the legacy variant"),
        (true, "iptables-nft", .nftables, "this namespace holds both kinds of rules and the system's iptables is the nf_tables variant"),
    ])
    func bothOrNeitherFollowTheSystemVariant(both: Bool, target: String, kind: BackendKind, reason: String) throws {
        try withStateDirectory { directory in
            let selector = try selector(legacy: both, nft: both, in: directory, iptablesTarget: target)
            #expect(selector.systemVariant() == kind)
            #expect(Picked(try selector.select(.auto, recorded: nil, stateHasRules: false)) == Picked(kind, reason))
        }
    }

    /// A container given only NET_ADMIN cannot use libiptc (it needs a raw socket): where `auto`
    /// would pick legacy x_tables, it takes nftables and says why. A recorded backend still wins.
    @Test func withoutNetRawAutoTakesNftables() throws {
        try withStateDirectory { directory in
            var selector = try selector(legacy: false, nft: false, in: directory, iptablesTarget: "xtables-legacy-multi")
            selector.legacyUsable = { false }
            #expect(Picked(try selector.select(.auto, recorded: nil, stateHasRules: false)) == Picked(.nftables,
                "this namespace holds no rules yet and the system's iptables is the legacy variant, but without CAP_NET_RAW legacy x_tables cannot be used"))
            #expect(Picked(try selector.select(.auto, recorded: .iptables, stateHasRules: true)) == Picked(.iptables, "docknfv's state here uses it"))
            // The real probe reads this process's effective set; the tests run as root with it.
            #expect(BackendSelector.effectiveCapability(13))
        }
    }

    @Test func noIptablesCommandMeansNftables() throws {
        try withStateDirectory { directory in
            let selector = try selector(legacy: false, nft: false, in: directory, iptablesTarget: nil)
            #expect(selector.systemVariant() == nil)
            #expect(Picked(try selector.select(.auto, recorded: nil, stateHasRules: false))
                    == Picked(.nftables, "this namespace holds no rules yet and there is no iptables command"))
        }
        // A command whose name tells neither variant is no answer either.
        try withStateDirectory { directory throws in
            #expect(try selector(legacy: false, nft: false, in: directory, iptablesTarget: "iptables-1.8.9").systemVariant() == nil)
        }
    }

    @Test(arguments: [(BackendChoice.iptables, BackendKind.iptables), (.nftables, .nftables)])
    func anExplicitChoiceIsTakenAsItIs(choice: BackendChoice, kind: BackendKind) throws {
        let reason = "chosen with --backend \(kind.rawValue)"
        #expect(Picked(try unprobed.select(choice, recorded: nil, stateHasRules: false)) == Picked(kind, reason))
        #expect(Picked(try unprobed.select(choice, recorded: kind, stateHasRules: true)) == Picked(kind, reason))
        // Another backend recorded, but nothing in the state: nothing to move.
        let other: BackendKind = kind == .iptables ? .nftables : .iptables
        #expect(Picked(try unprobed.select(choice, recorded: other, stateHasRules: false)) == Picked(kind, reason))
    }

    @Test(arguments: [(BackendChoice.iptables, BackendKind.nftables), (.nftables, .iptables)])
    func anExplicitChoiceConflictingWithTheRecordedBackendIsRefused(choice: BackendChoice, recorded: BackendKind) throws {
        let error = #expect(throws: EngineError.self) { try unprobed.select(choice, recorded: recorded, stateHasRules: true) }
        #expect(error?.code == .conflict)
        #expect(error?.message == "docknfv's rules here are held by \(recorded.rawValue); move them with `docknfvctl migrate --to \(choice.rawValue)` first")
    }

    @Test func choicesAreParsed() throws {
        #expect(try BackendChoice(parsing: "auto") == .auto)
        #expect(try BackendChoice(parsing: "NFTables") == .nftables)
        #expect(try BackendChoice(parsing: "iptables") == .iptables)
        let error = #expect(throws: EngineError.self) { try BackendChoice(parsing: "pf") }
        #expect(error?.code == .invalidInput)
        #expect(error?.message == "backend \"pf\": expected auto, nftables or iptables")
    }
}
