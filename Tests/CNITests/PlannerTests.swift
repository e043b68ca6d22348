import ASG
import CNI
import CNIPlugin
import PortMap
import RuleEngine
import StateFiles
import Testing

/// The planners: config + observed facts → rules and routes, with no kernel.
@Suite("CNI planners")
struct PlannerTests {
    static let attachment = Attachment(network: "net1", id: AttachmentID(containerID: "c0ffee", ifname: "eth1"))

    static func texts(_ ruleset: Ruleset, _ family: IPFamily, _ table: NetfilterTable, _ chain: String) -> [String] {
        ruleset.table(TableKey(family, table))?.entries[chain]?.map(\.text) ?? []
    }

    static func plan(_ extra: String, addresses: [String] = ["10.1.0.2/24"], gateways: [String] = ["10.1.0.1"], args: [(String, String)] = []) throws -> AttachmentPlan {
        let config = try PluginConfig(CNIProtocolTests.json("{\"cniVersion\":\"1.0.0\",\"name\":\"net1\",\(extra)}"), command: .add)
        return try AttachmentPlanner.plan(config, PlanInputs(attachment: attachment, addresses: addresses.map { InterfaceAddress($0)! },
                                                              gateways: gateways.map { IPAddress($0)! }, hostInterfaces: ["br0", "veth1"], args: args))
    }

    @Test func portMappingsDNATOnlyLocalDestinations() throws {
        let plan = try Self.plan(#""runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80},{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"fd00::1"}]}"#,
                                 addresses: ["10.1.0.2/24", "fd00:1::2/64"])
        #expect(Self.texts(plan.host, .v4, .nat, "PREROUTING") == ["-m addrtype --dst-type LOCAL -j HOSTPORTS"])
        #expect(Self.texts(plan.host, .v4, .nat, "OUTPUT") == ["-m addrtype --dst-type LOCAL -j HOSTPORTS"])
        #expect(Self.texts(plan.host, .v4, .nat, "HOSTPORTS") == ["-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80"])
        #expect(Self.texts(plan.host, .v4, .nat, "POSTROUTING") == ["-s 10.1.0.0/24 -d 10.1.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE"])
        #expect(Self.texts(plan.host, .v6, .nat, "HOSTPORTS") == [
            "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:1::2]:80",
            "-d fd00::1/128 -p udp -m udp --dport 5353 -j DNAT --to-destination [fd00:1::2]:53",
        ])
        #expect(plan.localnetInterfaces.isEmpty)
        let local = try Self.plan(#""portMap":{"localhost":true},"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}"#)
        #expect(Self.texts(local.host, .v4, .nat, "POSTROUTING").last == "-s 127.0.0.0/8 -d 10.1.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE")
        #expect(local.localnetInterfaces == ["br0"])
    }

    @Test func asgChainRejectsByDefaultAndUsesSetsForManyNetworks() throws {
        let networks = (0..<6).map { "{\"start\":\"10.9.\($0).0\",\"end\":\"10.9.\($0).255\"}" }.joined(separator: ",")
        let plan = try Self.plan(#""asg":{"denyNetworks":["169.254.169.254/32"],"logDenied":true},"runtimeConfig":{"netOutRules":[{"protocol":"tcp","networks":[{"start":"10.0.0.1","end":"10.0.0.1"}],"ports":"80, 443"},{"protocol":"icmp","icmp_info":{"type":8,"code":0}},{"protocol":"udp","networks":[\#(networks)]}]}"#)
        #expect(Self.texts(plan.host, .v4, .filter, "FORWARD") == ["-s 10.1.0.2/32 -j ASG"])
        let chain = Self.texts(plan.host, .v4, .filter, "ASG")
        #expect(chain.first == "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        #expect(chain.contains("-d 169.254.169.254/32 -j REJECT --reject-with icmp-port-unreachable"))
        #expect(chain.contains("-d 10.0.0.1/32 -p tcp -m multiport --dports 80,443 -j ACCEPT"))
        #expect(chain.contains("-p icmp -m icmp --icmp-type 8/0 -j ACCEPT"))
        let setName = try #require(plan.host.sets.keys.first)
        #expect(chain.contains("-p udp -m set --match-set \(setName) dst -j ACCEPT"))
        #expect(plan.host.sets[setName]?.entries.count == 6)
        #expect(chain.suffix(2).first?.contains("-j LOG --log-prefix \"DENY_c0ffee \"") == true)
        #expect(chain.last == "-j REJECT --reject-with icmp-port-unreachable")
    }

    /// Consecutive rules of one shape merge: a thousand ASG rules to different networks on one port
    /// are one rule and one set; a rule of another shape in between keeps its place.
    @Test func consecutiveRulesOfOneShapeMerge() throws {
        let many = (0..<1000).map { "{\"protocol\":\"tcp\",\"networks\":[{\"start\":\"10.\(100 + $0 / 250).\($0 % 250).0\",\"end\":\"10.\(100 + $0 / 250).\($0 % 250).255\"}],\"ports\":[{\"start\":443,\"end\":443}]}" }
        let between = "{\"protocol\":\"udp\",\"networks\":[{\"start\":\"10.0.0.53\",\"end\":\"10.0.0.53\"}],\"ports\":[{\"start\":53,\"end\":53}]}"
        let rules = (many.prefix(500) + [between] + many.suffix(500)).joined(separator: ",")
        let plan = try Self.plan("\"runtimeConfig\":{\"netOutRules\":[\(rules)]}")
        let chain = Self.texts(plan.host, .v4, .filter, "ASG")
        #expect(chain.count == 5, "\(chain)")
        #expect(plan.host.sets.count == 2 && plan.host.sets.values.allSatisfy { $0.entries.count == 500 })
        #expect(chain[2] == "-d 10.0.0.53/32 -p udp -m udp --dport 53 -j ACCEPT", "the udp rule stays between the two halves")
    }

    @Test func addressRangesBecomeExactPrefixes() {
        func text(_ a: String, _ b: String) -> [String] { AddressRanges.prefixes(from: IPAddress(a)!, to: IPAddress(b)!).map(\.description) }
        #expect(text("10.0.0.0", "10.0.0.255") == ["10.0.0.0/24"])
        #expect(text("10.0.0.1", "10.0.0.6") == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"])
        #expect(text("0.0.0.0", "255.255.255.255") == ["0.0.0.0/0"])
        #expect(text("255.255.255.255", "255.255.255.255") == ["255.255.255.255/32"])
        #expect(text("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == ["::/0"])
        #expect(text("fd00::", "fd00::1:ffff") == ["fd00::/111"])
    }

    @Test func sidesTakeTheirOwnTableAndCrossToTheOther() throws {
        let left = try #require(try Self.plan(#""side":"left""#).dualHome)
        #expect(left.routes.map(\.route.description).count == 2)
        #expect(left.routes.allSatisfy { $0.route.table == 101 })
        #expect(left.rules.map { "\($0.inputInterface ?? "") \($0.table) \($0.priority)" } == ["eth1 102 100"])
        let right = try #require(try Self.plan(#""side":"right","leftTable":201,"rightTable":202,"rulePriority":50"#).dualHome)
        #expect(right.routes.allSatisfy { $0.route.table == 202 })
        #expect(right.rules.map { "\($0.inputInterface ?? "") \($0.table) \($0.priority)" } == ["eth1 201 50"])
        #expect(throws: CNIError.self) { try Self.plan(#""side":"left""#, gateways: []) }
        #expect(throws: CNIError.self) { try Self.plan(#""side":"left""#, addresses: []) }
    }

    @Test func firewallRulesInsertAppendAndPolicies() throws {
        var config = try PluginConfig(CNIProtocolTests.json(#"{"cniVersion":"1.0.0","name":"n","firewall":{"policies":{"INPUT":"DROP"},"rules":[{"type":"A","chain":"INPUT","rule":"-i $CNI_IFNAME -p tcp --dport 22 -j ACCEPT"},{"type":"I","chain":"INPUT","rule":"-s 10.0.0.1 -j ACCEPT"},{"type":"I","chain":"INPUT","rule":"-s 10.0.0.2 -j ACCEPT"},{"chain":"INPUT","rule":"-p tcp --dport 80 -j ACCEPT","family":"both"}]}}"#), command: .add)
        config.side = nil
        let planned = try AttachmentPlanner.plan(config, PlanInputs(attachment: Self.attachment, addresses: [InterfaceAddress("10.1.0.2/24")!], gateways: [],
                                                                     environment: ["CNI_IFNAME": "eth1"]))
        #expect(Self.texts(planned.container, .v4, .filter, "INPUT") == [
            "-s 10.0.0.2/32 -j ACCEPT", "-s 10.0.0.1/32 -j ACCEPT",
            "-i eth1 -p tcp -m tcp --dport 22 -j ACCEPT", "-p tcp -m tcp --dport 80 -j ACCEPT", "-j DROP",
        ])
        #expect(Self.texts(planned.container, .v6, .filter, "INPUT") == ["-p tcp -m tcp --dport 80 -j ACCEPT", "-j DROP"])
        #expect(throws: CNIError.self) {
            try AttachmentPlanner.plan(try PluginConfig(CNIProtocolTests.json(#"{"cniVersion":"1.0.0","name":"n","firewall":{"rules":[{"chain":"INPUT","rule":"-p tcp --dport 99999 -j ACCEPT"}]}}"#), command: .add),
                                       PlanInputs(attachment: Self.attachment, addresses: [], gateways: []))
        }
    }

    @Test func redirectExcludesAndOptsOut() throws {
        let extra = #""redirect":{"inbound":{"ports":[80],"proxyPort":15006},"outbound":{"proxyPort":15001},"excludePorts":[22],"excludeCIDRs":["10.96.0.0/12"],"excludeUIDs":[1337],"excludeNamespaces":["kube-system"]}"#
        let plan = try Self.plan(extra)
        #expect(Self.texts(plan.container, .v4, .nat, "REDIR-IN") == [
            "-s 10.96.0.0/12 -j RETURN", "-p tcp -m tcp --dport 22 -j RETURN", "-p tcp -m tcp --dport 15006 -j RETURN",
            "-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 15006",
        ])
        let out = Self.texts(plan.container, .v4, .nat, "REDIR-OUT")
        #expect(out.first == "-d 127.0.0.0/8 -j RETURN")
        #expect(out.last == "-p tcp -j REDIRECT --to-ports 15001")
        #expect(try Self.plan(extra, args: [("K8S_POD_NAMESPACE", "kube-system")]).container.isEmpty)
        #expect(try Self.plan(extra, args: [("DOCKNFV_REDIRECT", "false")]).container.isEmpty)
    }

    @Test func outboundChainInOrderWithDefault() throws {
        let plan = try Self.plan(#""outbound":{"defaultAction":"DROP","outboundRules":[{"host":"8.8.8.8","proto":"udp","port":"53","action":"ACCEPT"},{"host":"192.168.1.0/24","proto":"tcp","port":"80-90","action":"ACCEPT"}]},"runtimeConfig":{"outboundRules":[{"host":"10.0.0.0/8","proto":"tcp","port":"443","action":"ACCEPT"}]}"#)
        #expect(Self.texts(plan.host, .v4, .filter, "CNI-OUTBOUND") == [
            "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            "-d 8.8.8.8/32 -p udp -m udp --dport 53 -j RETURN",
            "-d 192.168.1.0/24 -p tcp -m tcp --dport 80:90 -j RETURN",
            "-d 10.0.0.0/8 -p tcp -m tcp --dport 443 -j RETURN",
            "-j DROP",
        ])
    }
}
