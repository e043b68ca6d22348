import Foundation
import Testing
import NFTables
import NetNS
import RuleEngine
import TestSupport

/// client (10.70.0.2) ── r0 [router: docknfv's nftables rules] r1 ── server (10.80.0.2)
/// Each target acts on real TCP through the router.
@Suite("nftables backend: every target on real traffic", .enabled(if: TestEnv.privileged), .serialized)
struct NFTablesTrafficTests {
    struct Lab {
        let client: TestNamespace, router: TestNamespace, server: TestNamespace

        func apply(_ tables: [TableRules]) throws {
            let ruleset = Ruleset(tables: tables)
            _ = try inside(router) { try NFTablesBackend().apply(ruleset, previous: Ruleset()) }
        }

        func clear() throws { _ = try inside(router) { try NFTablesBackend().remove(Ruleset()) } }

        /// A TCP exchange client → address:port answered by a server listening on `listen`
        /// (default: the same); returns the source address the server saw, nil if no answer.
        func connect(_ address: String, _ port: UInt16, listen: (TestNamespace, String, UInt16)? = nil) throws -> String? {
            let (namespace, listenAddress, listenPort) = listen ?? (server, address, port)
            let peer = PeerAddress()
            _ = try TCPProbe.startEchoServer(in: namespace, address: listenAddress, port: listenPort, peer: peer)
            let answered = try TCPProbe.echo(from: client, to: address, port: port, timeoutMs: 1000)
            if !answered { _ = try? TCPProbe.echo(from: namespace, to: listenAddress, port: listenPort, timeoutMs: 2000) } // free the server
            return answered ? peer.address : nil
        }

        func counter(_ text: String) throws -> Int {
            let listed = try router.mustRun(["nft", "list", "table", "ip", "docknfv"])
            guard let line = listed.split(separator: "\n").first(where: { $0.contains(text) }),
                  let range = line.range(of: #"packets (\d+)"#, options: .regularExpression) else { return -1 }
            return Int(line[range].dropFirst("packets ".count)) ?? -1
        }
    }

    static func with(_ body: (Lab) throws -> Void) throws {
        try withNamespaces(["client", "router", "server"]) { ns in
            try TestSupport.connect(ns[0], "eth0", ["10.70.0.2/24"], ns[1], "r0", ["10.70.0.1/24"])
            try TestSupport.connect(ns[1], "r1", ["10.80.0.1/24"], ns[2], "eth0", ["10.80.0.2/24"])
            _ = try ns[0].ip("route add default via 10.70.0.1")
            _ = try ns[2].ip("route add default via 10.80.0.1")
            _ = try ns[1].mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try body(Lab(client: ns[0], router: ns[1], server: ns[2]))
        }
    }

    func filter(_ chains: [String: [String]], userChains: Set<String> = [], policies: [String: String] = [:]) throws -> TableRules {
        TableRules(family: .v4, table: .filter, chains: try chains.mapValues { try rules($0) }, userChains: userChains, policies: policies)
    }

    @Test func acceptDropRejectAndPolicy() throws {
        try Self.with { lab in
            #expect(try lab.connect("10.80.0.2", 17300) == "10.70.0.2")
            try lab.apply([try filter(["FORWARD": ["-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-p tcp --dport 17301 -j DROP", "-p tcp --dport 17302 -j REJECT --reject-with tcp-reset",
                                                   "-p tcp --dport 17303 -j REJECT", "-p tcp --dport 17304 -j ACCEPT"]],
                                      policies: ["FORWARD": "DROP"])])
            #expect(try lab.connect("10.80.0.2", 17301) == nil)
            #expect(try lab.connect("10.80.0.2", 17302) == nil)
            #expect(try lab.connect("10.80.0.2", 17303) == nil)
            #expect(try lab.connect("10.80.0.2", 17304) == "10.70.0.2") // accepted; its replies by the conntrack rule
            #expect(try lab.counter("tcp dport 17302") >= 1)
            #expect(try lab.connect("10.80.0.2", 17305) == nil) // everything else meets the DROP policy
            try lab.clear()
            #expect(try lab.connect("10.80.0.2", 17306) == "10.70.0.2")
        }
    }

    @Test func jumpGotoAndReturn() throws {
        try Self.with { lab in
            try lab.apply([try filter(["FORWARD": ["-p tcp -j checks", "-p tcp --dport 17311 -j DROP"],
                                       "checks": ["-p tcp --dport 17310 -j DROP", "-p tcp --dport 17311 -j RETURN", "-p tcp --dport 17312 -g more"],
                                       "more": ["-p tcp -j DROP"]])])
            #expect(try lab.connect("10.80.0.2", 17310) == nil) // dropped in the jumped-to chain
            #expect(try lab.connect("10.80.0.2", 17311) == nil) // returned, then dropped in FORWARD
            #expect(try lab.connect("10.80.0.2", 17312) == nil) // went to `more`
            #expect(try lab.connect("10.80.0.2", 17313) == "10.70.0.2")
        }
    }

    @Test func dnatSnatMasqueradeAndRedirect() throws {
        try Self.with { lab in
            try lab.apply([TableRules(family: .v4, table: .nat, chains: [
                "PREROUTING": try rules(["-p tcp -d 10.70.0.1 --dport 8080 -j DNAT --to-destination 10.80.0.2:17320",
                                         "-p tcp -d 10.70.0.1 --dport 8081 -j REDIRECT --to-ports 17321"]),
                "POSTROUTING": try rules(["-s 10.70.0.2 -p tcp --dport 17322 -j SNAT --to-source 10.80.0.1",
                                          "-s 10.70.0.2 -o r1 -p tcp --dport 17323 -j MASQUERADE"])])])
            #expect(try lab.connect("10.70.0.1", 8080, listen: (lab.server, "10.80.0.2", 17320)) == "10.70.0.2")
            #expect(try lab.connect("10.70.0.1", 8081, listen: (lab.router, "10.70.0.1", 17321)) == "10.70.0.2")
            #expect(try lab.connect("10.80.0.2", 17322) == "10.80.0.1")
            #expect(try lab.connect("10.80.0.2", 17323) == "10.80.0.1")
            #expect(try lab.connect("10.80.0.2", 17324) == "10.70.0.2") // no rule: the source is kept
        }
    }

    /// `-m addrtype --dst-type LOCAL` (`fib daddr type local`): only packets to one of the router's
    /// own addresses are DNATed; with `--limit-iface-in` only those to an address of the interface
    /// they came in on.
    @Test func dnatToLocalAddressesOnly() throws {
        try Self.with { lab in
            try lab.apply([TableRules(family: .v4, table: .nat, chains: [
                "PREROUTING": try rules(["-m addrtype --dst-type LOCAL -p tcp --dport 17340 -j DNAT --to-destination 10.80.0.2:17341",
                                         "-m addrtype --dst-type LOCAL --limit-iface-in -p tcp --dport 17342 -j DNAT --to-destination 10.80.0.2:17341"])])])
            // To the router's address on the client's side: DNATed to the server's 17341.
            #expect(try lab.connect("10.70.0.1", 17340, listen: (lab.server, "10.80.0.2", 17341)) == "10.70.0.2")
            // The router's address on the far side is local too (no interface limit).
            #expect(try lab.connect("10.80.0.1", 17340, listen: (lab.server, "10.80.0.2", 17341)) == "10.70.0.2")
            // Through the router to the server: not a local address, so not DNATed — the
            // server's own 17340 answers (after a DNAT nobody would listen on 17341).
            #expect(try lab.connect("10.80.0.2", 17340) == "10.70.0.2")
            #expect(try lab.counter("fib daddr type local tcp dport 17340") == 2)
            // --limit-iface-in: 10.70.0.1 is on r0, where the packet came in; 10.80.0.1 is on r1.
            #expect(try lab.connect("10.70.0.1", 17342, listen: (lab.server, "10.80.0.2", 17341)) == "10.70.0.2")
            #expect(try lab.connect("10.80.0.1", 17342, listen: (lab.router, "10.80.0.1", 17342)) == "10.70.0.2")
            #expect(try lab.counter("fib daddr . iif type local tcp dport 17342") == 1)
        }
    }

    @Test func markLogNflogAndTcpmssLetTrafficThrough() throws {
        try Self.with { lab in
            try lab.apply([
                TableRules(family: .v4, table: .mangle, chains: [
                    "PREROUTING": try rules(["-p tcp --dport 17330 -j MARK --set-mark 0x7", "-p tcp --dport 17331 -j MARK --set-xmark 0x1/0xff"]),
                    "FORWARD": try rules(["-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
                                          "-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200"])]),
                try filter(["FORWARD": ["-m mark --mark 0x7 -j DROP", "-m mark --mark 0x1/0xff -p tcp --dport 17331 -j REJECT --reject-with tcp-reset",
                                        "-p tcp --dport 17332 -j LOG --log-prefix \"dnfv-test \"", "-p tcp --dport 17332 -j NFLOG --nflog-group 7"]]),
            ])
            #expect(try lab.connect("10.80.0.2", 17330) == nil) // the mark was set, then matched
            #expect(try lab.connect("10.80.0.2", 17331) == nil)
            #expect(try lab.connect("10.80.0.2", 17332) == "10.70.0.2") // LOG and NFLOG do not stop packets
            #expect(try lab.counter("log prefix \"dnfv-test \"") >= 1)
            #expect(try lab.counter("log group 7") >= 1)
            #expect(try lab.counter("maxseg size set 1200") >= 1)
        }
    }
}
