import Foundation
import Testing
import TestSupport

extension RouterLab {
    /// docknfv's rules in one chain as the kernel holds them, in order: the `iptables-legacy-save`
    /// lines of DNFV-<chain>, or the rule lines of nftables chain <table>-<chain> (counters blanked).
    func kernelRules(_ chain: String, table: String = "filter") throws -> [String] {
        if backend == "iptables" {
            return try saved(table).split(separator: "\n").map(String.init).filter { $0.hasPrefix("-A DNFV-\(chain) ") }
        }
        let result = try router.run(["nft", "list", "chain", "ip", "docknfv", "\(table)-\(chain)"])
        guard result.succeeded else { return [] }
        return result.stdout.replacingOccurrences(of: #"counter packets \d+ bytes \d+"#, with: "counter", options: .regularExpression)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("table ") && !$0.hasPrefix("chain ") && !$0.hasPrefix("type ") && $0 != "}" }
    }

    /// Whether the kernel holds docknfv's chain at all.
    func kernelHasChain(_ chain: String, table: String = "filter") throws -> Bool {
        if backend == "iptables" { return try saved(table).contains(":DNFV-\(chain) ") }
        return try router.run(["nft", "list", "chain", "ip", "docknfv", "\(table)-\(chain)"]).succeeded
    }

    /// Connects client → server through the router; returns the source address the server saw
    /// (nil when the connection failed).
    func sourceSeenByServer(_ port: UInt16) throws -> String? {
        let peer = PeerAddress()
        _ = try TCPProbe.startEchoServer(in: server, address: "10.60.0.2", port: port, peer: peer)
        guard try TCPProbe.echo(from: client, to: "10.60.0.2", port: port, timeoutMs: 1200) else {
            _ = try? TCPProbe.echo(from: server, to: "10.60.0.2", port: port, timeoutMs: 2000) // release the listener
            return nil
        }
        return peer.address
    }

    /// The expected kernel form of a rule, per backend (both written out by hand).
    func expected(iptables: String, nftables: String) -> String { backend == "iptables" ? iptables : nftables }
}

/// The docknfvctl commands the first end-to-end suites left out — status, chain, nat snat,
/// --position, delete by text — driven as a binary through a router namespace with real TCP,
/// for each backend.
@Suite("docknfvctl commands end to end", .enabled(if: TestEnv.privileged), .serialized)
struct DocknfvctlCommandsTests {
    static let backends = ["iptables", "nftables"]

    @Test(arguments: backends)
    func statusTellsBackendSyncAndCounts(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            _ = try lab.mustCtl(["nat", "masquerade", "--out-interface", "r1"])
            _ = try lab.mustCtl(["ipset", "create", "friends", "hash:ip", "10.50.0.2"])
            let status = try lab.mustCtl(["status"])
            #expect(status == """
                state: \(lab.stateFile)
                rules: 2 in 2 table(s), 1 set(s)
                backend: \(backend) (chosen with --backend \(backend))
                kernel: in sync

                """, "\(status)")
            let json = try JSONSerialization.jsonObject(with: Data(try lab.mustCtl(["--json", "status"]).utf8)) as? [String: Any]
            #expect(json?["stateFile"] as? String == lab.stateFile)
            #expect(json?["rules"] as? Int == 2)
            #expect(json?["backend"] as? String == backend)
            #expect(json?["backendReason"] as? String == "chosen with --backend \(backend)")
            #expect(json?["inSync"] as? Bool == true)
            #expect(json?["legacyRules"] as? Bool == (backend == "iptables"))
            #expect(json?["nftablesTables"] as? [String] == (backend == "nftables" ? ["ip docknfv"] : []))

            // Someone empties docknfv's chain behind its back: status says the kernel differs.
            if backend == "iptables" {
                _ = try lab.router.mustRun(["iptables-legacy", "-F", "DNFV-FORWARD"])
            } else {
                _ = try lab.router.mustRun(["nft", "flush", "chain", "ip", "docknfv", "filter-FORWARD"])
            }
            let drifted = try lab.ctl(["status"])
            #expect(drifted.status == 0, "\(drifted)")
            #expect(drifted.stdout.contains("\nkernel: differs (see docknfvctl diff)\n"), "\(drifted)")
            #expect(try lab.ctl(["--json", "status"]).stdout.contains("\"inSync\" : false"))
        }
    }

    /// Rules of the other kind in the namespace are evaluated too; status warns about them.
    @Test(arguments: backends)
    func statusWarnsAboutTheOtherKindOfRules(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-j", "ACCEPT"])
            if backend == "iptables" {
                _ = try lab.router.mustRun(["nft", "add", "table", "ip", "foreign"])
                #expect(try lab.mustCtl(["status"]).contains(
                    "warning: nf_tables also holds tables here (ip foreign); their rules are evaluated too and docknfv does not manage them"))
            } else {
                _ = try lab.router.mustRun(["iptables-legacy", "-A", "INPUT", "-s", "192.0.2.1", "-j", "DROP"])
                #expect(try lab.mustCtl(["status"]).contains(
                    "warning: legacy x_tables also holds rules here (iptables-legacy-save shows them); they are evaluated too and docknfv does not manage them"))
            }
        }
    }

    @Test(arguments: backends)
    func chainsAreCreatedUsedAndDeletedOnlyWhenUnused(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            #expect(try lab.mustCtl(["chain", "create", "web"]) == "chain web\n")
            _ = try lab.mustCtl(["rule", "add", "--chain", "web", "--", "-s", "10.50.0.2", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17301", "-j", "web"])
            let web = try lab.kernelRules("web"), forward = try lab.kernelRules("FORWARD")
            #expect(web == [lab.expected(iptables: "-A DNFV-web -s 10.50.0.2/32 -p tcp -j REJECT --reject-with tcp-reset",
                                         nftables: "ip protocol tcp ip saddr 10.50.0.2 counter reject with tcp reset")])
            #expect(forward == [lab.expected(iptables: "-A DNFV-FORWARD -p tcp -m tcp --dport 17301 -j DNFV-web",
                                             nftables: "tcp dport 17301 counter jump filter-web")])
            #expect(try !lab.tcp("10.60.0.2", 17301)) // through the chain
            #expect(try lab.tcp("10.60.0.2", 17302)) // not jumped to

            // Still jumped to: refused, nothing changes.
            let state = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            let refused = try lab.ctl(["chain", "delete", "web"])
            #expect(refused.status == 65, "\(refused)")
            #expect(refused.stderr == "docknfvctl: error: rule r2 still jumps to web; delete it first\n", "\(refused)")
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == state)
            #expect(try lab.kernelHasChain("web"))
            #expect(try !lab.tcp("10.60.0.2", 17301))

            // A chain that does not exist, and a name that cannot be one.
            #expect(try lab.ctl(["chain", "delete", "nosuch"]).stderr.contains("no chain \"nosuch\" in ipv4/filter"))
            let badName = try lab.ctl(["chain", "create", "has space"])
            #expect(badName.status == 65 && badName.stderr.contains("chain name \"has space\" is invalid"), "\(badName)")

            _ = try lab.mustCtl(["rule", "del", "--id", "r2"])
            #expect(try lab.mustCtl(["chain", "delete", "web"]) == "deleted chain web\n")
            #expect(try !lab.kernelHasChain("web"))
            #expect(try lab.tcp("10.60.0.2", 17301))
            #expect(try lab.mustCtl(["rule", "list"]) == "") // its rule went with it
        }
    }

    /// SNAT rewrites the source: the server sees the router's address instead of the client's.
    @Test(arguments: backends)
    func snatRewritesTheSourceTheServerSees(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            #expect(try lab.sourceSeenByServer(17310) == "10.50.0.2")
            #expect(try lab.mustCtl(["nat", "snat", "--source", "10.50.0.0/24", "--to", "10.60.0.1", "--out-interface", "r1"]).hasPrefix("r1\t"))
            let postrouting = try lab.kernelRules("POSTROUTING", table: "nat")
            #expect(postrouting == [lab.expected(
                iptables: "-A DNFV-POSTROUTING -s 10.50.0.0/24 -o r1 -j SNAT --to-source 10.60.0.1",
                nftables: "ip saddr 10.50.0.0/24 oifname \"r1\" counter snat to 10.60.0.1")])
            #expect(try lab.sourceSeenByServer(17311) == "10.60.0.1")
            // Another source is not rewritten.
            _ = try lab.mustCtl(["rule", "flush", "--table", "nat"])
            _ = try lab.mustCtl(["nat", "snat", "--source", "10.99.0.0/24", "--to", "10.60.0.1"])
            #expect(try lab.sourceSeenByServer(17312) == "10.50.0.2")
            let bad = try lab.ctl(["nat", "snat", "--source", "10.50.0.0/24", "--to", "not-an-address"])
            #expect(bad.status == 65, "\(bad)")
        }
    }

    @Test(arguments: backends)
    func positionsPlaceRulesAndOrderDecidesTraffic(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            func add(_ command: String, _ position: String?, _ rule: [String]) throws {
                _ = try lab.mustCtl(["rule", command, "--chain", "FORWARD"] + (position.map { ["--position", $0] } ?? []) + ["--"] + rule)
            }
            try add("add", nil, ["-p", "tcp", "--dport", "17320", "-j", "REJECT", "--reject-with", "tcp-reset"])
            try add("add", nil, ["-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            #expect(try !lab.tcp("10.60.0.2", 17320))
            // An ACCEPT appended after the REJECT changes nothing; inserted before it, it wins.
            try add("add", nil, ["-s", "10.50.0.2", "-p", "tcp", "--dport", "17320", "-j", "ACCEPT"])
            #expect(try !lab.tcp("10.60.0.2", 17320))
            try add("insert", nil, ["-s", "10.50.0.2", "-p", "tcp", "--dport", "17320", "-j", "ACCEPT"]) // insert: position 1
            #expect(try lab.tcp("10.60.0.2", 17320))
            try add("add", "2", ["-m", "mark", "--mark", "0x2", "-j", "DROP"])
            try add("insert", "5", ["-m", "mark", "--mark", "0x5", "-j", "DROP"])
            try add("add", "7", ["-m", "mark", "--mark", "0x7", "-j", "DROP"]) // one past the end appends
            #expect(try lab.mustCtl(["rule", "list", "--chain", "FORWARD"]).split(separator: "\n").map { $0.split(separator: "\t").first.map(String.init) ?? "" }
                    == ["r4", "r5", "r1", "r2", "r6", "r3", "r7"])
            let forward = try lab.kernelRules("FORWARD")
            #expect(forward == (backend == "iptables" ? [
                "-A DNFV-FORWARD -s 10.50.0.2/32 -p tcp -m tcp --dport 17320 -j ACCEPT",
                "-A DNFV-FORWARD -m mark --mark 0x2 -j DROP",
                "-A DNFV-FORWARD -p tcp -m tcp --dport 17320 -j REJECT --reject-with tcp-reset",
                "-A DNFV-FORWARD -p udp -m udp --dport 53 -j ACCEPT",
                "-A DNFV-FORWARD -m mark --mark 0x5 -j DROP",
                "-A DNFV-FORWARD -s 10.50.0.2/32 -p tcp -m tcp --dport 17320 -j ACCEPT",
                "-A DNFV-FORWARD -m mark --mark 0x7 -j DROP",
            ] : [
                "ip saddr 10.50.0.2 tcp dport 17320 counter accept",
                "meta mark 0x00000002 counter drop",
                "tcp dport 17320 counter reject with tcp reset",
                "udp dport 53 counter accept",
                "meta mark 0x00000005 counter drop",
                "ip saddr 10.50.0.2 tcp dport 17320 counter accept",
                "meta mark 0x00000007 counter drop",
            ]))
            // Outside the chain: refused, nothing changes.
            let state = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            for position in ["0", "9"] {
                let refused = try lab.ctl(["rule", "insert", "--chain", "FORWARD", "--position", position, "--", "-j", "DROP"])
                #expect(refused.status == 65, "\(refused)")
                #expect(refused.stderr == "docknfvctl: error: position \(position) is outside chain FORWARD (1 to 8)\n", "\(refused)")
            }
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == state)
            #expect(try lab.tcp("10.60.0.2", 17320))
        }
    }

    @Test(arguments: backends)
    func deleteByTextRemovesTheFirstEqualRule(backend: String) throws {
        try RouterLab.with(backend: backend) { lab in
            let reject = ["-p", "tcp", "--dport", "17330", "-j", "REJECT", "--reject-with", "tcp-reset"]
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--"] + reject)
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--"] + reject)
            #expect(try !lab.tcp("10.60.0.2", 17330))
            // Written as iptables-save would print it, not as it was added: the rule is what counts.
            let canonical = ["-p", "tcp", "-m", "tcp", "--dport", "17330", "-j", "REJECT", "--reject-with", "tcp-reset"]
            _ = try lab.mustCtl(["rule", "del", "--chain", "FORWARD", "--"] + canonical)
            #expect(try lab.mustCtl(["rule", "list"]).split(separator: "\n").map { $0.split(separator: "\t").first.map(String.init) ?? "" } == ["r2", "r3"])
            #expect(try !lab.tcp("10.60.0.2", 17330)) // the second copy still rejects
            _ = try lab.mustCtl(["rule", "del", "--chain", "FORWARD", "--"] + reject)
            #expect(try lab.tcp("10.60.0.2", 17330))
            let forward = try lab.kernelRules("FORWARD")
            #expect(forward == [lab.expected(iptables: "-A DNFV-FORWARD -p udp -m udp --dport 53 -j ACCEPT", nftables: "udp dport 53 counter accept")])
            // No such rule (any more), or in another chain: refused, nothing changes.
            let state = try String(contentsOfFile: lab.stateFile, encoding: .utf8)
            let missing = try lab.ctl(["rule", "del", "--chain", "FORWARD", "--"] + reject)
            #expect(missing.status == 65, "\(missing)")
            #expect(missing.stderr == "docknfvctl: error: chain FORWARD in filter has no rule \"-p tcp -m tcp --dport 17330 -j REJECT --reject-with tcp-reset\"\n", "\(missing)")
            let elsewhere = try lab.ctl(["rule", "del", "--chain", "INPUT", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            #expect(elsewhere.status == 65, "\(elsewhere)")
            let neither = try lab.ctl(["rule", "del"])
            #expect(neither.status == 64 && neither.stderr.contains("give --id, or --chain and the rule after --"), "\(neither)")
            #expect(try String(contentsOfFile: lab.stateFile, encoding: .utf8) == state)
        }
    }
}
