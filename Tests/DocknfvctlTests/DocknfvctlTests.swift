import Foundation
import Testing
import TestSupport

/// client (10.50.0.2) ── r0 [router: docknfvctl] r1 ── server (10.60.0.2)
struct RouterLab {
    let client: TestNamespace, router: TestNamespace, server: TestNamespace
    let stateDir: String
    /// The backend docknfvctl is told to use (these tests read the kernel with iptables-legacy-save).
    var backend = "iptables"

    static func with(backend: String = "iptables", _ body: (RouterLab) throws -> Void) throws {
        let stateDir = NSTemporaryDirectory() + "dnfvt-ctl-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        try withNamespaces(["client", "router", "server"]) { ns in
            try connect(ns[0], "eth0", ["10.50.0.2/24"], ns[1], "r0", ["10.50.0.1/24"])
            try connect(ns[1], "r1", ["10.60.0.1/24"], ns[2], "eth0", ["10.60.0.2/24"])
            _ = try ns[0].ip("route add default via 10.50.0.1")
            _ = try ns[2].ip("route add default via 10.60.0.1")
            _ = try ns[1].mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try body(RouterLab(client: ns[0], router: ns[1], server: ns[2], stateDir: stateDir, backend: backend))
        }
    }

    @discardableResult
    func ctl(_ arguments: [String]) throws -> CommandResult {
        try runCommand([TestEnv.binary("docknfvctl"), "--netns", router.path, "--state-dir", stateDir, "--backend", backend] + arguments)
    }

    func mustCtl(_ arguments: [String]) throws -> String {
        let result = try ctl(arguments)
        guard result.succeeded else { throw TestFailure("docknfvctl \(arguments.joined(separator: " ")): \(result)") }
        return result.stdout
    }

    func saved(_ table: String = "filter") throws -> String {
        try router.mustRun(["iptables-legacy-save", "-t", table]).split(separator: "\n")
            .filter { !$0.hasPrefix("#") }
            .map { $0.replacingOccurrences(of: #"\[\d+:\d+\]"#, with: "[0:0]", options: .regularExpression) }
            .joined(separator: "\n")
    }

    func tcp(_ address: String, _ port: UInt16, listenOn: String? = nil, listenPort: UInt16? = nil) throws -> Bool {
        _ = try TCPProbe.startEchoServer(in: server, address: listenOn ?? address, port: listenPort ?? port)
        let ok = try TCPProbe.echo(from: client, to: address, port: port, timeoutMs: 1200)
        if !ok { _ = try? TCPProbe.echo(from: server, to: listenOn ?? address, port: listenPort ?? port, timeoutMs: 2000) }
        return ok
    }

    var stateFile: String { stateDir + "/rules.json" }
}

@Suite("docknfvctl end to end", .enabled(if: TestEnv.privileged), .serialized)
struct DocknfvctlTests {
    @Test func rulesControlRealTraffic() throws {
        try RouterLab.with { lab in
            #expect(try lab.tcp("10.60.0.2", 17100))
            let added = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17101", "-j", "REJECT", "--reject-with", "tcp-reset"])
            let id = try #require(added.split(separator: "\t").first.map(String.init))
            #expect(try !lab.tcp("10.60.0.2", 17101))
            #expect(try lab.tcp("10.60.0.2", 17102)) // other ports still pass
            _ = try lab.mustCtl(["rule", "del", "--id", id])
            #expect(try lab.tcp("10.60.0.2", 17101))
            #expect(!(try lab.saved()).contains("DNFV"))
        }
    }

    @Test func portMappingWithDNAT() throws {
        try RouterLab.with { lab in
            _ = try lab.mustCtl(["nat", "dnat", "--port", "8080", "--to", "10.60.0.2:17110", "--destination", "10.50.0.1"])
            #expect(try lab.tcp("10.50.0.1", 8080, listenOn: "10.60.0.2", listenPort: 17110))
            #expect(try lab.saved("nat").contains("-A DNFV-PREROUTING -d 10.50.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.60.0.2:17110"))
        }
    }

    @Test func listSaveDiffApplyAndFlush() throws {
        try RouterLab.with { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            _ = try lab.mustCtl(["rule", "insert", "--chain", "FORWARD", "--", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])
            _ = try lab.mustCtl(["policy", "FORWARD", "DROP"])
            let listed = try lab.mustCtl(["--json", "rule", "list"])
            let json = try JSONSerialization.jsonObject(with: Data(listed.utf8)) as? [String: Any]
            let rules = try #require(json?["rules"] as? [[String: Any]])
            #expect(rules.map { $0["rule"] as? String } == ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-p udp -m udp --dport 53 -j ACCEPT"])
            #expect(rules.map { $0["id"] as? String } == ["r2", "r1"])
            #expect(try lab.mustCtl(["save"]).contains(":FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -p udp -m udp --dport 53 -j ACCEPT"))
            #expect(try lab.ctl(["diff"]).status == 0)
            _ = try lab.router.mustRun(["iptables-legacy", "-F", "DNFV-FORWARD"])
            let diff = try lab.ctl(["diff"])
            #expect(diff.status == 1)
            #expect(diff.stdout.contains("ipv4/filter missing: -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT (position 1)"), "\(diff)")
            _ = try lab.mustCtl(["apply"])
            #expect(try lab.ctl(["diff"]).status == 0)
            _ = try lab.mustCtl(["rule", "flush"])
            let after = try lab.saved()
            #expect(!after.contains("DNFV"))
            #expect(after.contains(":FORWARD ACCEPT"))
        }
    }

    @Test func importIsOneAtomicChange() throws {
        try RouterLab.with { lab in
            let file = lab.stateDir + "-import.rules"
            try """
                *filter
                :INPUT ACCEPT [0:0]
                :FORWARD ACCEPT [0:0]
                :OUTPUT ACCEPT [0:0]
                :web - [0:0]
                -A FORWARD -p tcp -m tcp --dport 80 -j web
                -A web -s 10.50.0.0/24 -j ACCEPT
                COMMIT
                *nat
                :PREROUTING ACCEPT [0:0]
                :INPUT ACCEPT [0:0]
                :OUTPUT ACCEPT [0:0]
                :POSTROUTING ACCEPT [0:0]
                -A POSTROUTING -o r1 -j MASQUERADE
                COMMIT
                """.write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            #expect(try lab.mustCtl(["import", file]).contains("imported 3 rules"))
            #expect(try lab.saved().contains("-A DNFV-FORWARD -p tcp -m tcp --dport 80 -j DNFV-web\n-A DNFV-web -s 10.50.0.0/24 -j ACCEPT"))
            #expect(try lab.saved("nat").contains("-A DNFV-POSTROUTING -o r1 -j MASQUERADE"))
            // A file with one bad line imports nothing.
            try "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j ACCEPT\n-A FORWARD -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n".write(toFile: file, atomically: true, encoding: .utf8)
            let stateBefore = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            let kernelBefore = try lab.saved()
            let bad = try lab.ctl(["import", file])
            #expect(bad.status != 0)
            #expect(bad.stderr.contains("line 4"), "\(bad)")
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == stateBefore)
            #expect(try lab.saved() == kernelBefore)
        }
    }

    @Test(arguments: [
        (["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "99999", "-j", "ACCEPT"], "token 4 \"99999\""),
        (["rule", "add", "--chain", "FORWARD", "--", "-s", "10.0.0.0/40", "-j", "DROP"], "10.0.0.0/40"),
        (["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--frobnicate", "-j", "DROP"], "--frobnicate"),
        (["rule", "add", "--chain", "FORWARD", "--", "-j", "NOSUCHCHAIN"], "jumps to chain NOSUCHCHAIN"),
        (["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "-j", "DNAT", "--to-destination", "10.0.0.1:80"], "not allowed in table filter"),
        (["rule", "add", "-4", "--chain", "FORWARD", "--", "-s", "fd00::/8", "-j", "DROP"], "does not fit an ipv4 rule"),
        (["rule", "add", "--chain", "NO/CHAIN", "--", "-j", "DROP"], "--chain \"NO/CHAIN\""),
        (["rule", "add", "--table", "bogus", "--chain", "FORWARD", "--", "-j", "DROP"], "--table \"bogus\""),
        (["policy", "FORWARD", "MAYBE"], "policy \"MAYBE\""),
        (["rule", "add", "--chain", "FORWARD"], "no rule given"),
    ])
    func badInputChangesNothing(arguments: [String], message: String) throws {
        try RouterLab.with { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-j", "ACCEPT"])
            let state = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            let kernel = try lab.saved()
            let result = try lab.ctl(arguments)
            #expect(result.status != 0)
            #expect((result.stderr + result.stdout).contains(message), "\(result)")
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == state)
            #expect(try lab.saved() == kernel)
        }
    }

    @Test func ipsetsDriveRulesAndArePersisted() throws {
        try RouterLab.with { lab in
            _ = try lab.mustCtl(["ipset", "create", "blocked", "hash:net", "192.0.2.0/24"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "-m", "set", "--match-set", "blocked", "src", "-j", "REJECT", "--reject-with", "tcp-reset"])
            #expect(try lab.tcp("10.60.0.2", 17130))
            _ = try lab.mustCtl(["ipset", "add", "blocked", "10.50.0.0/24"])
            #expect(try !lab.tcp("10.60.0.2", 17131))
            let members = try lab.router.mustRun(["ipset", "list", "blocked"])
            #expect(members.contains("10.50.0.0/24") && members.contains("192.0.2.0/24"))
            _ = try lab.mustCtl(["ipset", "del", "blocked", "10.50.0.0/24"])
            #expect(try lab.tcp("10.60.0.2", 17132))
            let refused = try lab.ctl(["ipset", "destroy", "blocked"])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("matches on set blocked"), "\(refused)")
            let state = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            #expect(state.contains("\"name\" : \"blocked\""))
            #expect(try lab.ctl(["rule", "add", "--chain", "FORWARD", "--", "-m", "set", "--match-set", "nosuchset", "src", "-j", "DROP"]).status != 0)
            _ = try lab.mustCtl(["rule", "flush"])
            _ = try lab.mustCtl(["ipset", "destroy", "blocked"])
            #expect(try !lab.router.run(["ipset", "list", "blocked"]).succeeded)
        }
    }

    @Test func dryRunValidatesAndChangesNothing() throws {
        try RouterLab.with { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-j", "ACCEPT"])
            let state = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            let kernel = try lab.saved()
            #expect(try lab.ctl(["--dry-run", "rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "22", "-j", "DROP"]).status == 0)
            #expect(try lab.ctl(["--dry-run", "rule", "add", "--chain", "FORWARD", "--", "-j", "NOSUCH"]).status != 0)
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == state)
            #expect(try lab.saved() == kernel)
        }
    }

    @Test func corruptStateFileIsReportedAndKept() throws {
        try RouterLab.with { lab in
            try FileManager.default.createDirectory(atPath: lab.stateDir, withIntermediateDirectories: true)
            try "{ this is not json".write(toFile: lab.stateFile, atomically: true, encoding: .utf8)
            let result = try lab.ctl(["rule", "add", "--chain", "FORWARD", "--", "-j", "ACCEPT"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("state file \(lab.stateFile) is corrupt"), "\(result)")
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == "{ this is not json")
            #expect(!(try lab.saved()).contains("DNFV"))
        }
    }

    @Test func parallelWritersLoseNothing() throws {
        try RouterLab.with { lab in
            var children: [ChildProcess] = []
            for writer in 0..<4 {
                let script = (0..<10).map { i in
                    "\(TestEnv.binary("docknfvctl")) --netns \(lab.router.path) --state-dir \(lab.stateDir) --backend iptables rule add --chain FORWARD -- -p tcp --dport \(20000 + writer * 100 + i) -j ACCEPT >/dev/null || exit 1"
                }.joined(separator: "\n")
                children.append(try ChildProcess.spawn(["sh", "-c", script]))
            }
            let foreign = (0..<10).map { "ip netns exec \(lab.router.name) iptables-legacy -w -A FORWARD -p udp --dport \(30000 + $0) -j ACCEPT || exit 1" }.joined(separator: "\n")
            children.append(try ChildProcess.spawn(["sh", "-c", foreign]))
            for child in children { #expect(child.wait() == 0) }
            let saved = try lab.saved()
            for writer in 0..<4 { for i in 0..<10 { #expect(saved.contains("-A DNFV-FORWARD -p tcp -m tcp --dport \(20000 + writer * 100 + i) -j ACCEPT")) } }
            for i in 0..<10 { #expect(saved.contains("-A FORWARD -p udp -m udp --dport \(30000 + i) -j ACCEPT")) }
            let listed = try lab.mustCtl(["rule", "list"]).split(separator: "\n")
            #expect(listed.count == 40)
            #expect(try lab.ctl(["diff"]).status == 0)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: lab.stateDir).filter { $0.contains(".tmp") }
            #expect(leftovers.isEmpty)
        }
    }

    /// A container restart: a new namespace starts with empty tables; docknfv-init re-applies
    /// the persisted state before running the command.
    @Test func docknfvInitReappliesPersistedRules() throws {
        try RouterLab.with { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17120", "-j", "DROP"])
            _ = try lab.mustCtl(["nat", "masquerade", "--out-interface", "eth0"])
            try withNamespaces(["vnf2", "left2", "right2"]) { ns in
                try connect(ns[0], "eth1", ["10.1.0.2/24"], ns[1], "eth0", ["10.1.0.1/24"])
                try connect(ns[0], "eth0", ["10.2.0.2/24"], ns[2], "eth0", ["10.2.0.1/24"])
                #expect(!(try ns[0].mustRun(["iptables-legacy-save"])).contains("DNFV"))
                let result = try runCommand(["ip", "netns", "exec", ns[0].name, "env", "DOCKNFV_LEFT_GW=10.1.0.1", "DOCKNFV_RIGHT_GW=10.2.0.1",
                                             "DOCKNFV_STATE_DIR=\(lab.stateDir)", TestEnv.binary("docknfv-init"), "--", "true"])
                #expect(result.status == 0, "\(result)")
                #expect(result.stderr.contains("persisted rules from \(lab.stateFile): committed ipv4/nat, ipv4/filter"), "\(result)")
                let saved = try ns[0].mustRun(["iptables-legacy-save"])
                #expect(saved.contains("-A DNFV-FORWARD -p tcp -m tcp --dport 17120 -j DROP"))
                #expect(saved.contains("-A DNFV-POSTROUTING -o eth0 -j MASQUERADE"))
            }
        }
    }
}
