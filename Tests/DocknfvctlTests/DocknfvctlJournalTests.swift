import Foundation
import Testing
import TestSupport

/// `rule add` at the end of a chain with hundreds of rules goes through the journal beside
/// `rules.json` (one rule sent, one line written), for each backend, with real TCP through the
/// router: the kernel, the listing and later whole changes all agree with it, also when someone
/// else changed the rules in between.
@Suite("docknfvctl appends through the journal", .enabled(if: TestEnv.privileged), .serialized)
struct DocknfvctlJournalTests {
    func reject(_ lab: RouterLab, _ port: Int) -> String {
        lab.expected(iptables: "-A DNFV-FORWARD -p tcp -m tcp --dport \(port) -j REJECT --reject-with tcp-reset",
                     nftables: "tcp dport \(port) counter reject with tcp reset")
    }

    func journalLines(_ lab: RouterLab) throws -> [String] {
        try String(contentsOfFile: lab.stateDir + "/rules.journal", encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test(arguments: ["nftables", "iptables"])
    func appendsThroughTheJournal(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            let file = lab.stateDir + "-import.rules"
            defer { try? FileManager.default.removeItem(atPath: file) }
            let lines = (0..<300).map { "-A FORWARD -s 10.200.\($0 / 256).\($0 % 256)/32 -j DROP" }
            try ("*filter\n" + lines.joined(separator: "\n") + "\nCOMMIT\n").write(toFile: file, atomically: true, encoding: .utf8)
            _ = try lab.mustCtl(["import", file])
            let snapshot = try Data(contentsOf: URL(fileURLWithPath: lab.stateFile))
            let added = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17230", "-j", "REJECT", "--reject-with", "tcp-reset"])
            #expect(added == "r301\t-p tcp -m tcp --dport 17230 -j REJECT --reject-with tcp-reset\n")
            #expect(try Data(contentsOf: URL(fileURLWithPath: lab.stateFile)) == snapshot, "the state file was not rewritten")
            #expect(try journalLines(lab).count == 2)
            #expect(try journalLines(lab)[1].contains(#"["r301","ipv4","filter","FORWARD","-p tcp -m tcp --dport 17230 -j REJECT --reject-with tcp-reset"]"#))
            #expect(try lab.kernelRules("FORWARD").count == 301)
            #expect(try lab.kernelRules("FORWARD").last == reject(lab, 17230))
            #expect(try !lab.tcp("10.60.0.2", 17230))
            #expect(try lab.tcp("10.60.0.2", 17231))
            #expect(try lab.mustCtl(["diff"]) == "in sync\n")
            #expect(try lab.mustCtl(["rule", "list"]).split(separator: "\n").last == "r301\tipv4\tfilter\tFORWARD\t-p tcp -m tcp --dport 17230 -j REJECT --reject-with tcp-reset")

            // Someone else changes the rules: the next append goes the whole way (and so puts
            // docknfv's chain back as the state says).
            if backend == "nftables" {
                _ = try lab.router.mustRun(["nft", "add", "table", "ip", "someone-else"])
            } else {
                _ = try lab.router.mustRun(["iptables-legacy", "-w", "-I", "DNFV-FORWARD", "1", "-p", "tcp", "--dport", "17233", "-j", "REJECT"])
            }
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17231", "-j", "REJECT", "--reject-with", "tcp-reset"])
            #expect(try !lab.tcp("10.60.0.2", 17231))
            #expect(try Data(contentsOf: URL(fileURLWithPath: lab.stateFile)) != snapshot)
            #expect(try journalLines(lab).count == 1, "a new journal for the new state file")
            #expect(try lab.kernelRules("FORWARD").count == 302)
            #expect(try lab.tcp("10.60.0.2", 17233), "the stray rule (iptables) is gone; nothing else (nftables) blocks it")
            if backend == "nftables" { #expect(try lab.router.mustRun(["nft", "list", "tables"]).contains("table ip someone-else")) }

            // A delete is a whole change: it folds the journal in, and the rule's traffic passes again.
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17232", "-j", "REJECT", "--reject-with", "tcp-reset"])
            #expect(try journalLines(lab).count == 2)
            _ = try lab.mustCtl(["rule", "del", "--id", "r301"])
            #expect(try lab.tcp("10.60.0.2", 17230))
            #expect(try !lab.tcp("10.60.0.2", 17232))
            #expect(try lab.kernelRules("FORWARD").suffix(2) == [reject(lab, 17231), reject(lab, 17232)])
            #expect(try lab.mustCtl(["diff"]) == "in sync\n")
            _ = try lab.mustCtl(["rule", "flush"])
            #expect(try lab.kernelRules("FORWARD").isEmpty)
        }
    }
}
