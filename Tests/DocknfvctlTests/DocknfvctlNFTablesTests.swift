import Foundation
import Testing
import TestSupport

extension RouterLab {
    /// `nft list table FAMILY docknfv` in the router, counters blanked; "" when there is no such table.
    func nft(_ family: String = "ip") throws -> String {
        let result = try router.run(["nft", "list", "table", family, "docknfv"])
        guard result.succeeded else { return "" }
        return result.stdout.replacingOccurrences(of: #"counter packets \d+ bytes \d+"#, with: "counter", options: .regularExpression)
    }
}

/// docknfvctl driven as a binary with the nftables backend, through a router namespace with real TCP.
@Suite("docknfvctl end to end with nftables", .enabled(if: TestEnv.privileged), .serialized)
struct DocknfvctlNFTablesTests {
    @Test func rulesControlRealTraffic() throws {
        try RouterLab.with(backend: "nftables") { lab in
            #expect(try lab.tcp("10.60.0.2", 17200))
            let added = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17201", "-j", "REJECT", "--reject-with", "tcp-reset"])
            let id = try #require(added.split(separator: "\t").first.map(String.init))
            #expect(try lab.nft().contains("tcp dport 17201 counter reject with tcp reset"))
            #expect(try !lab.tcp("10.60.0.2", 17201))
            #expect(try lab.tcp("10.60.0.2", 17202))
            _ = try lab.mustCtl(["rule", "del", "--id", id])
            #expect(try lab.tcp("10.60.0.2", 17201))
            _ = try lab.mustCtl(["rule", "flush"])
            #expect(try lab.nft() == "")
            #expect(!(try lab.router.mustRun(["iptables-legacy-save"])).contains("DNFV"))
        }
    }

    @Test func portMappingAndMasquerade() throws {
        try RouterLab.with(backend: "nftables") { lab in
            _ = try lab.mustCtl(["nat", "dnat", "--port", "8080", "--to", "10.60.0.2:17210", "--destination", "10.50.0.1"])
            _ = try lab.mustCtl(["nat", "masquerade", "--out-interface", "r1"])
            #expect(try lab.tcp("10.50.0.1", 8080, listenOn: "10.60.0.2", listenPort: 17210))
            let listed = try lab.nft()
            #expect(listed.contains("ip daddr 10.50.0.1 tcp dport 8080 counter dnat to 10.60.0.2:17210"), "\(listed)")
            #expect(listed.contains("oifname \"r1\" counter masquerade"), "\(listed)")
        }
    }

    @Test func setsDriveRules() throws {
        try RouterLab.with(backend: "nftables") { lab in
            _ = try lab.mustCtl(["ipset", "create", "blocked", "hash:net", "192.0.2.0/24"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "-m", "set", "--match-set", "blocked", "src", "-j", "REJECT", "--reject-with", "tcp-reset"])
            #expect(try lab.tcp("10.60.0.2", 17220))
            _ = try lab.mustCtl(["ipset", "add", "blocked", "10.50.0.0/24"])
            #expect(try lab.router.mustRun(["nft", "list", "set", "ip", "docknfv", "blocked"]).contains("elements = { 10.50.0.0/24, 192.0.2.0/24 }"))
            #expect(try !lab.tcp("10.60.0.2", 17221))
            _ = try lab.mustCtl(["ipset", "del", "blocked", "10.50.0.0/24"])
            #expect(try lab.tcp("10.60.0.2", 17222))
            #expect(try !lab.router.run(["ipset", "list", "blocked"]).succeeded) // an nftables set, not an ipset
        }
    }

    @Test func diffSeesDriftAndApplyRepairsIt() throws {
        try RouterLab.with(backend: "nftables") { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-m", "mark", "--mark", "0x1", "-j", "DROP"])
            #expect(try lab.ctl(["diff"]).status == 0)
            _ = try lab.router.mustRun(["nft", "flush", "chain", "ip", "docknfv", "filter-FORWARD"])
            let diff = try lab.ctl(["diff"])
            #expect(diff.status == 1)
            #expect(diff.stdout.contains("ipv4/filter missing: -A FORWARD -p udp -m udp --dport 53 -j ACCEPT (position 1)"), "\(diff)")
            _ = try lab.mustCtl(["apply"])
            #expect(try lab.ctl(["diff"]).status == 0)
            // The whole table gone (e.g. `nft flush ruleset`): named as such, and repaired.
            _ = try lab.router.mustRun(["nft", "delete", "table", "ip", "docknfv"])
            let gone = try lab.ctl(["diff"])
            #expect(gone.status == 1 && gone.stdout.contains("ipv4/filter missing: table ip docknfv"), "\(gone)")
            _ = try lab.mustCtl(["apply"])
            #expect(try lab.ctl(["diff"]).status == 0)
            // A broken state makes diff fail with 2, not "differs".
            try "{".write(toFile: lab.stateFile, atomically: true, encoding: .utf8)
            #expect(try lab.ctl(["diff"]).status == 2)
        }
    }

    @Test func importNeedsNoBuiltinChainDeclarations() throws {
        try RouterLab.with(backend: "nftables") { lab in
            let file = lab.stateDir + "-import.rules"
            try "*filter\n-A FORWARD -p tcp --dport 17230 -j DROP\nCOMMIT\n".write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            #expect(try lab.mustCtl(["import", file]).contains("imported 1 rules"))
            #expect(try lab.nft().contains("tcp dport 17230 counter drop"))
        }
    }

    @Test func autoFollowsTheNamespaceThenTheSystem() throws {
        try RouterLab.with(backend: "auto") { lab in
            // An empty namespace on this host (iptables is the nf_tables variant): nftables.
            let variant = try mustRun(["readlink", "-f", "/usr/sbin/iptables"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-j", "ACCEPT"])
            let status = try lab.mustCtl(["status"])
            if variant.contains("nft") {
                #expect(status.contains("backend: nftables (docknfv's state here uses it)"), "\(status)")
                #expect(try lab.nft().contains("counter accept"))
            }
        }
        try RouterLab.with(backend: "auto") { lab in
            // A namespace that holds only legacy rules: docknfv joins them there.
            _ = try lab.router.mustRun(["iptables-legacy", "-A", "INPUT", "-s", "192.0.2.1", "-j", "DROP"])
            let status = try lab.mustCtl(["status"])
            #expect(status.contains("backend: iptables (this namespace holds only legacy x_tables rules)"), "\(status)")
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-j", "ACCEPT"])
            #expect(try lab.saved().contains("-A DNFV-FORWARD -j ACCEPT"))
            // An explicit other backend is refused while the rules live in this one.
            let refused = try runCommand([TestEnv.binary("docknfvctl"), "--netns", lab.router.path, "--state-dir", lab.stateDir, "--backend", "nftables",
                                          "rule", "add", "--chain", "FORWARD", "--", "-j", "DROP"])
            #expect(refused.status == 65 && refused.stderr.contains("migrate --to nftables"), "\(refused)")
        }
    }

    /// Migration keeps a blocking rule in force throughout and leaves nothing in the old backend.
    @Test func migrateMovesRulesBothWays() throws {
        try RouterLab.with(backend: "iptables") { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17240", "-j", "REJECT", "--reject-with", "tcp-reset"])
            _ = try lab.mustCtl(["ipset", "create", "friends", "hash:ip", "10.50.0.2"])
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-m", "set", "--match-set", "friends", "src", "-j", "ACCEPT"])
            #expect(try !lab.tcp("10.60.0.2", 17240))
            let moved = try runCommand([TestEnv.binary("docknfvctl"), "--netns", lab.router.path, "--state-dir", lab.stateDir, "migrate", "--to", "nftables"])
            #expect(moved.status == 0 && moved.stdout.contains("moved from iptables to nftables"), "\(moved)")
            #expect(!(try lab.saved()).contains("DNFV"))
            #expect(try !lab.router.run(["ipset", "list", "friends"]).succeeded)
            #expect(try lab.nft().contains("tcp dport 17240 counter reject with tcp reset"))
            #expect(try !lab.tcp("10.60.0.2", 17240))
            let status = try runCommand([TestEnv.binary("docknfvctl"), "--netns", lab.router.path, "--state-dir", lab.stateDir, "status"])
            #expect(status.stdout.contains("backend: nftables (docknfv's state here uses it)"), "\(status)")
            let back = try runCommand([TestEnv.binary("docknfvctl"), "--netns", lab.router.path, "--state-dir", lab.stateDir, "migrate", "--to", "iptables"])
            #expect(back.status == 0, "\(back)")
            #expect(try lab.nft() == "")
            #expect(try lab.saved().contains("-A DNFV-FORWARD -p tcp -m tcp --dport 17240 -j REJECT --reject-with tcp-reset"))
            #expect(try !lab.tcp("10.60.0.2", 17240))
        }
    }

    /// Parallel docknfvctl writers and a foreign `nft` writer committing at the same time: every
    /// batch planned from a stale read is refused by the kernel (generation) and re-planned, so
    /// nothing is lost on either side.
    @Test func parallelWritersAndAForeignNftWriterLoseNothing() throws {
        try RouterLab.with(backend: "nftables") { lab in
            _ = try lab.router.mustRun(["nft", "add table ip foreign; add chain ip foreign c { type filter hook input priority 10; }"])
            var children: [ChildProcess] = []
            for writer in 0..<4 {
                let script = (0..<10).map { i in
                    "\(TestEnv.binary("docknfvctl")) --netns \(lab.router.path) --state-dir \(lab.stateDir) --backend nftables rule add --chain FORWARD -- -p tcp --dport \(21000 + writer * 100 + i) -j ACCEPT >/dev/null || exit 1"
                }.joined(separator: "\n")
                children.append(try ChildProcess.spawn(["sh", "-c", script]))
            }
            let foreign = (0..<40).map { "nsenter --net=\(lab.router.path) nft add rule ip foreign c udp dport \(31000 + $0) accept || exit 1" }.joined(separator: "\n")
            children.append(try ChildProcess.spawn(["sh", "-c", foreign]))
            for child in children { #expect(child.wait() == 0) }
            let ours = try lab.nft()
            for writer in 0..<4 { for i in 0..<10 { #expect(ours.contains("tcp dport \(21000 + writer * 100 + i) counter accept")) } }
            let theirs = try lab.router.mustRun(["nft", "list", "table", "ip", "foreign"])
            for i in 0..<40 { #expect(theirs.contains("udp dport \(31000 + i) accept")) }
            #expect(try lab.mustCtl(["rule", "list"]).split(separator: "\n").count == 40)
            #expect(try lab.ctl(["diff"]).status == 0)
        }
    }

    /// Without CAP_NET_RAW (a container given only NET_ADMIN) libiptc cannot work: asking for it
    /// says so, and `auto` leaves it aside even where the namespace's rules would point to it.
    @Test func withoutNetRawLegacyIsRefusedAndAutoTakesNftables() throws {
        try RouterLab.with(backend: "auto") { lab in
            func ctl(_ arguments: [String]) throws -> CommandResult {
                try runCommand(["ip", "netns", "exec", lab.router.name, "setpriv", "--bounding-set", "-net_raw",
                                TestEnv.binary("docknfvctl"), "--state-dir", lab.stateDir] + arguments)
            }
            let refused = try ctl(["--backend", "iptables", "rule", "add", "--chain", "INPUT", "--", "-j", "ACCEPT"])
            #expect(refused.status == 77 && refused.stderr.contains("needs CAP_NET_ADMIN and CAP_NET_RAW"), "\(refused)")
            _ = try lab.router.mustRun(["iptables-legacy", "-A", "INPUT", "-s", "192.0.2.1", "-j", "DROP"]) // legacy rules only
            let added = try ctl(["rule", "add", "--chain", "INPUT", "--", "-p", "tcp", "--dport", "17260", "-j", "DROP"])
            #expect(added.status == 0, "\(added)")
            #expect(try lab.nft().contains("tcp dport 17260 counter drop"))
            let status = try ctl(["status"])
            #expect(status.stdout.contains("backend: nftables (docknfv's state here uses it)"), "\(status)")
        }
    }

    /// A container restart: docknfv-init re-applies an nftables state in a fresh namespace.
    @Test func docknfvInitReappliesNftablesRules() throws {
        try RouterLab.with(backend: "nftables") { lab in
            _ = try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--", "-p", "tcp", "--dport", "17250", "-j", "DROP"])
            try withNamespaces(["vnf3", "left3", "right3"]) { ns in
                try connect(ns[0], "eth1", ["10.1.0.2/24"], ns[1], "eth0", ["10.1.0.1/24"])
                try connect(ns[0], "eth0", ["10.2.0.2/24"], ns[2], "eth0", ["10.2.0.1/24"])
                let result = try runCommand(["ip", "netns", "exec", ns[0].name, "env", "DOCKNFV_LEFT_GW=10.1.0.1", "DOCKNFV_RIGHT_GW=10.2.0.1",
                                             "DOCKNFV_STATE_DIR=\(lab.stateDir)", TestEnv.binary("docknfv-init"), "--", "true"])
                #expect(result.status == 0, "\(result)")
                #expect(try ns[0].mustRun(["nft", "list", "table", "ip", "docknfv"]).contains("tcp dport 17250 counter"))
            }
        }
    }

    /// `--netns /proc/PID/ns/net` keys the default state directory by the namespace itself.
    @Test func procPathsOfTwoNamespacesGetTwoStateDirectories() throws {
        try withNamespaces(["keya", "keyb"]) { ns in
            let sleepers = try ns.map { try ChildProcess.spawn(["ip", "netns", "exec", $0.name, "sleep", "30"]) }
            defer { for child in sleepers { child.signal(SIGKILL); _ = child.wait() } }
            var paths: [String] = []
            for (index, namespace) in ns.enumerated() {
                var pid: String = ""
                for _ in 0..<100 { // until `ip netns exec` has become sleep inside the namespace
                    pid = try mustRun(["sh", "-c", "ip netns pids \(namespace.name) | head -n1"]).trimmingCharacters(in: .whitespacesAndNewlines)
                    if !pid.isEmpty { break }
                    usleep(10_000)
                }
                let result = try runCommand([TestEnv.binary("docknfvctl"), "--netns", "/proc/\(pid)/ns/net", "--backend", "nftables", "--json", "status"])
                #expect(result.status == 0, "\(result)")
                let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
                paths.append(try #require(json?["stateFile"] as? String))
                _ = index
            }
            #expect(paths.count == 2 && paths[0] != paths[1], "\(paths)")
            #expect(paths.allSatisfy { $0.hasPrefix("/var/lib/docknfv/netns/ino-") })
        }
    }
}
