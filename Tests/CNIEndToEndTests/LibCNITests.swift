import Foundation
import Testing
import TestSupport

extension CNIEndToEndTests {
    /// Debian's libcni (1.1.2) drives a bridge + host-local + docknfv list at cniVersion 1.0.0,
    /// as containerd or CRI-O would, with port mappings and Cloud Foundry ASGs in runtimeConfig.
    ///
    ///   container ns 10.83.0.x ── [bridge cnie2e-b3 10.83.0.1 | host ns | cnie2e-up3 10.84.0.1] ── beyond ns 10.84.0.2
    @Suite("libcni drives ADD, CHECK and DEL") struct LibCNI {
        static let capabilities = """
            {"portMappings":[{"hostPort":8081,"containerPort":80,"protocol":"tcp"},{"host_port":8082,"container_port":80}],
             "netOutRules":[{"protocol":"tcp","networks":[{"start":"10.84.0.0","end":"10.84.0.255"}],"ports":[{"start":7001,"end":7001}]},
                            {"protocol":"icmp","networks":[{"start":"10.84.0.2","end":"10.84.0.2"}],"icmp_info":{"type":8,"code":-1}},
                            {"protocol":"tcp","ports":"7003, 7004","networks":[{"start":"10.84.1.1","end":"10.84.1.9"},{"start":"10.84.2.1"},
                              {"start":"10.84.3.0","end":"10.84.3.255"},{"start":"10.84.4.1"},{"start":"10.84.0.2","end":"10.84.0.2"}]}]}
            """

        /// Issue 9, tests: ASGs allow and reject what they say (a long network list through a
        /// set), a mapped port is reachable through the host, CHECK passes and then fails after a
        /// rule is deleted by hand, DEL leaves no rule, chain, set or record — with each host backend.
        @Test(arguments: ["nftables", "iptables"])
        func asgsPortMappingsCheckAndDel(backend: String) throws {
            let scratch = try ScratchDir("libcni")
            defer { scratch.remove() }
            let servers = EchoServers()
            defer { servers.stop() }
            try withNamespaces(["lhost", "lctr", "lbeyon"]) { ns in
                let (host, container, beyond) = (ns[0], ns[1], ns[2])
                try connect(host, "cnie2e-up3", ["10.84.0.1/24"], beyond, "eth0", ["10.84.0.2/24"])
                _ = try beyond.ip("route add default via 10.84.0.1")
                try host.mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
                let stateDir = scratch.file("state")
                let list = try scratch.write("net.conflist", conflist(
                    version: "1.0.0", name: "dnfvt-lcni", bridge: "cnie2e-b3", subnet: "10.83.0.0/24", defaultRoute: true, ipamDir: scratch.file("ipam"),
                    docknfv: #""side":"left","backend":"\#(backend)","stateDir":"\#(stateDir)","capabilities":{"portMappings":true,"netOutRules":true}"#))
                let cni = LibCNIRuntime(host: host, conflist: list, plugins: try PluginDir(in: scratch), cacheDir: scratch.file("cache"))
                let id = "dnfvt-lcni-ctr"

                let added = try cni.run("add", id: id, netns: container.path, capabilities: Self.capabilities)
                #expect(added.succeeded, "\(added)")
                guard added.succeeded else { return }
                let result = try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any]
                #expect(result?["cniVersion"] as? String == "1.0.0")
                let address = try #require(((result?["ips"] as? [[String: Any]])?.first?["address"] as? String)?.split(separator: "/").first.map(String.init))

                // ASGs: tcp 7001 and ICMP echo to beyond are allowed, tcp 7002 is rejected though
                // its server is there (the host, whose traffic no ASG governs, reaches it).
                try servers.start(in: beyond.path, port: 7001)
                try servers.start(in: beyond.path, port: 7002)
                try servers.start(in: beyond.path, port: 7003)
                try servers.start(in: container.path, port: 80)
                #expect(try tcpEcho(from: host.path, to: address, port: 80))
                #expect(try tcpEcho(from: container.path, to: "10.84.0.2", port: 7001))
                #expect(try !tcpEcho(from: container.path, to: "10.84.0.2", port: 7002))
                #expect(try tcpEcho(from: host.path, to: "10.84.0.2", port: 7002))
                #expect(try Traffic.pingTTL(from: container.path, to: "10.84.0.2").reply != nil)
                // A rule with more networks than asg.setThreshold (4) matches a set, and the set works.
                #expect(try tcpEcho(from: container.path, to: "10.84.0.2", port: 7003))
                let sets = backend == "nftables" ? try mustInNetns(host.path, ["nft", "list", "sets"]) : try Leftovers.ipsets(host.path).joined(separator: "\n")
                #expect(!sets.isEmpty && sets.contains("docknfv") == (backend == "nftables"), "\(sets)")
                // Port mappings, in the CNI and in Cloud Foundry's form, through the host's address.
                #expect(try tcpEcho(from: beyond.path, to: "10.84.0.1", port: 8081))
                #expect(try tcpEcho(from: beyond.path, to: "10.84.0.1", port: 8082))
                #expect(try !tcpEcho(from: beyond.path, to: "10.84.0.1", port: 8083))

                // CHECK passes; a rule deleted by hand makes it fail and name the rule; so does the
                // container's iif rule.
                let checked = try cni.run("check", id: id, netns: container.path, capabilities: Self.capabilities)
                #expect(checked.succeeded, "\(checked)")
                try deleteDocknfvRule(in: host.path, containing: "7001")
                #expect(try !tcpEcho(from: container.path, to: "10.84.0.2", port: 7001))
                let drifted = try cni.run("check", id: id, netns: container.path, capabilities: Self.capabilities)
                #expect(!drifted.succeeded && drifted.stderr.contains("7001"), "\(drifted)")
                _ = try container.ip("rule del iif eth0 lookup 102")
                let noRule = try cni.run("check", id: id, netns: container.path, capabilities: Self.capabilities)
                #expect(!noRule.succeeded && noRule.stderr.contains("7001") && noRule.stderr.contains("lookup 102"), "\(noRule)")

                try cni.must("del", id: id, netns: container.path, capabilities: Self.capabilities)
                let leftovers = try Leftovers.all(host: host.path, containers: [container.path], stateDir: stateDir)
                #expect(leftovers.isEmpty, "\(leftovers)")
                #expect(cni.cachedResults.isEmpty, "\(cni.cachedResults)")
                #expect(try !tcpEcho(from: beyond.path, to: "10.84.0.1", port: 8081))
            }
        }
    }
}
