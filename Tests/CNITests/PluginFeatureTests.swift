import Foundation
import StateFiles
import Testing
import TestSupport

/// The plugin's features with real traffic, in the protocol tests' lab (host and container
/// namespaces joined by a veth; the plugin run in the host one).
@Suite("docknfv CNI binary: features with traffic", .enabled(if: TestEnv.privileged), .serialized)
struct PluginFeatureTests {
    typealias Lab = PluginBinaryTests.Lab

    static func config(_ lab: Lab, _ extra: String, runtime: String = "") -> String {
        #"{"cniVersion":"1.0.0","name":"featnet","type":"docknfv","stateDir":"\#(lab.stateDir)""#
            + (extra.isEmpty ? "" : ",\(extra)") + #","runtimeConfig":{\#(runtime)},"prevResult":\#(lab.prevResult("1.0.0"))}"#
    }

    /// The host's own 127.0.0.1:hostPort reaches the container (route_localnet on the host-side
    /// interface, masquerade from 127.0.0.0/8), only with `portMap.localhost`.
    @Test func localhostReachesAMappedPort() throws {
        try PluginBinaryTests().withLab { lab in
            let runtime = #""portMappings":[{"hostPort":8080,"containerPort":80}]"#
            let plain = Self.config(lab, "", runtime: runtime)
            #expect(try lab.plugin(lab.env("ADD"), plain).status == 0)
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "10.70.0.2", port: 80)
            #expect(try !TCPProbe.echo(from: lab.host, to: "127.0.0.1", port: 8080, timeoutMs: 500), "not without portMap.localhost")
            #expect(try TCPProbe.echo(from: lab.host, to: "10.70.0.2", port: 80), "the server was listening")
            #expect(try lab.plugin(lab.env("DEL"), plain).status == 0)

            let local = Self.config(lab, #""portMap":{"localhost":true}"#, runtime: runtime)
            let add = try lab.plugin(lab.env("ADD"), local)
            #expect(add.status == 0, "\(add.raw)")
            #expect(try lab.host.mustRun(["sysctl", "-n", "net.ipv4.conf.veth0.route_localnet"]).hasPrefix("1"))
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "10.70.0.2", port: 80)
            #expect(try TCPProbe.echo(from: lab.host, to: "127.0.0.1", port: 8080))
            #expect(try lab.plugin(lab.env("DEL"), local).status == 0)
        }
    }

    /// Inbound TCP to port 80 lands on the proxy port; the container's own outbound TCP lands on
    /// its outbound proxy; a container that opts out through CNI_ARGS gets neither.
    @Test func redirectionToALocalProxy() throws {
        try PluginBinaryTests().withLab { lab in
            let config = Self.config(lab, #""redirect":{"inbound":{"ports":[80],"proxyPort":15006},"outbound":{"proxyPort":15001},"excludeUIDs":[1337]}"#)
            let add = try lab.plugin(lab.env("ADD"), config)
            #expect(add.status == 0, "\(add.raw)")
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "10.70.0.2", port: 15006)
            #expect(try TCPProbe.echo(from: lab.host, to: "10.70.0.2", port: 80), "port 80 → the inbound proxy")
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "127.0.0.1", port: 15001)
            #expect(try TCPProbe.echo(from: lab.container, to: "10.70.0.1", port: 9999), "outbound → the outbound proxy")
            #expect(try lab.container.mustRun(["nft", "list", "ruleset"]).contains("meta skuid 1337"))
            #expect(try lab.plugin(lab.env("DEL"), config).status == 0)

            let optedOut = try lab.plugin(lab.env("ADD", args: "DOCKNFV_REDIRECT=false"), config)
            #expect(optedOut.status == 0, "\(optedOut.raw)")
            #expect(try lab.tables(lab.container).isEmpty, "nothing to redirect")
            #expect(try lab.plugin(lab.env("DEL"), config).status == 0)
        }
    }

    /// `mtu` sets the container interface's MTU; `mssClamp` clamps forwarded SYNs.
    @Test func mtuAndMSSClamping() throws {
        try PluginBinaryTests().withLab { lab in
            let config = Self.config(lab, #""mtu":1400,"mssClamp":true"#)
            let add = try lab.plugin(lab.env("ADD"), config)
            #expect(add.status == 0, "\(add.raw)")
            #expect(try lab.container.ip("link show eth0").contains("mtu 1400"))
            #expect(try lab.container.mustRun(["nft", "list", "ruleset"]).contains("tcp option maxseg size set rt mtu"))
            #expect(try lab.plugin(lab.env("CHECK"), config).status == 0)
            #expect(try lab.plugin(lab.env("DEL"), config).status == 0)
            let auto = try lab.plugin(lab.env("ADD"), Self.config(lab, #""mtu":"auto""#))
            #expect(auto.status != 0 && auto.raw.contains("no default route"), "the lab's host has no uplink: \(auto.raw)")
            #expect(lab.records().isEmpty)
        }
    }

    /// `firewall.fwFiles`: iptables-save files relative to `dataDir`, applied in the container; a
    /// missing file is named.
    @Test func firewallFiles() throws {
        try PluginBinaryTests().withLab { lab in
            let dir = lab.stateDir + "-fw"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 2223 -j DROP\nCOMMIT\n".write(toFile: dir + "/base.fw", atomically: true, encoding: .utf8)
            try "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 5000 -j DROP\nCOMMIT\n".write(toFile: dir + "/extra.fw", atomically: true, encoding: .utf8)
            let config = Self.config(lab, #""firewall":{"dataDir":"\#(dir)","fwFiles":["base.fw","extra.fw"]}"#)
            let add = try lab.plugin(lab.env("ADD"), config)
            #expect(add.status == 0, "\(add.raw)")
            let rules = try lab.container.mustRun(["nft", "list", "ruleset"])
            #expect(rules.contains("tcp dport 2223") && rules.contains("udp dport 5000"), "\(rules)")
            #expect(try lab.plugin(lab.env("DEL"), config).status == 0)
            let missing = try lab.plugin(lab.env("ADD"), Self.config(lab, #""firewall":{"dataDir":"\#(dir)","fwFiles":["nope.fw"]}"#))
            #expect(missing.json?["code"]?.int == 7 && missing.raw.contains("firewall.fwFiles[0]"), "\(missing.raw)")
            #expect(try lab.records().isEmpty && lab.tables(lab.host).isEmpty)
        }
    }

    /// cni-outbound: what the host forwards from the container goes through its chain: the allowed
    /// port gets through to a host beyond, another port is dropped.
    @Test func outboundRulesWithTraffic() throws {
        try PluginBinaryTests().withLab { lab in
            try withNamespaces(["cnib"]) { ns in
                let beyond = ns[0]
                try connect(lab.host, "veth9", ["10.75.0.1/24"], beyond, "eth0", ["10.75.0.2/24"])
                _ = try beyond.ip("route add 10.70.0.0/24 via 10.75.0.1")
                _ = try lab.container.ip("route add default via 10.70.0.1")
                _ = try lab.host.mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
                let config = Self.config(lab, #""outbound":{"defaultAction":"DROP","outboundRules":[{"host":"10.75.0.2","proto":"tcp","port":"7000","action":"ACCEPT"}]}"#)
                let add = try lab.plugin(lab.env("ADD"), config)
                #expect(add.status == 0, "\(add.raw)")
                _ = try TCPProbe.startEchoServer(in: beyond, address: "10.75.0.2", port: 7000)
                #expect(try TCPProbe.echo(from: lab.container, to: "10.75.0.2", port: 7000))
                _ = try TCPProbe.startEchoServer(in: beyond, address: "10.75.0.2", port: 7001)
                #expect(try !TCPProbe.echo(from: lab.container, to: "10.75.0.2", port: 7001, timeoutMs: 500))
                #expect(try TCPProbe.echo(from: lab.host, to: "10.75.0.2", port: 7001), "the host itself is not filtered")
                #expect(try lab.plugin(lab.env("DEL"), config).status == 0)
                _ = try TCPProbe.startEchoServer(in: beyond, address: "10.75.0.2", port: 7001)
                #expect(try TCPProbe.echo(from: lab.container, to: "10.75.0.2", port: 7001), "allowed again after DEL")
            }
        }
    }
}
