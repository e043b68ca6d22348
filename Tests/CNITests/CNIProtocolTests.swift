import ASG
import CNI
import CNIPlugin
import PortMap
import RuleEngine
import StateFiles
import Testing

/// The protocol's pure parts: versions, environment, results, the config and its bad inputs.
@Suite("CNI protocol and config")
struct CNIProtocolTests {
    static func json(_ text: String) -> JSON {
        do { return try JSON.parse(Array(text.utf8)) } catch { fatalError("test JSON \(text): \(error)") }
    }

    static func config(_ extra: String = "", version: String = "1.0.0", command: CNICommand = .add) throws(CNIError) -> PluginConfig {
        try PluginConfig(json("{\"cniVersion\":\"\(version)\",\"name\":\"net1\",\"type\":\"docknfv\"\(extra.isEmpty ? "" : ",")\(extra)}"), command: command)
    }

    static func code(_ body: () throws -> Void) -> (Int, String)? {
        do { try body(); return nil } catch let error as CNIError { return (error.code, error.description) } catch { return (-1, "\(error)") }
    }

    @Test(arguments: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    func supportedVersionsAreAccepted(version: String) throws {
        #expect(try Self.config(version: version).cniVersion.description == version)
    }

    @Test(arguments: [("0.1.0", 1), ("0.2.0", 1), ("2.0.0", 1), ("1.0", 1), ("x", 1)])
    func unsupportedVersionsAreCode1(version: String, code: Int) {
        #expect(Self.code { _ = try Self.config(version: version) }?.0 == code)
    }

    @Test func commandsNeedTheirVersion() {
        #expect(Self.code { _ = try Self.config(version: "0.3.1", command: .check) }?.0 == 1)
        #expect(Self.code { _ = try Self.config(version: "1.0.0", command: .status) }?.0 == 1)
        #expect(Self.code { _ = try Self.config(version: "1.0.0", command: .gc) }?.0 == 1)
        #expect(Self.code { _ = try Self.config("\"cni.dev/valid-attachments\":[]", version: "1.1.0", command: .gc) } == nil)
    }

    @Test func environmentIsCheckedAndNamed() throws {
        func request(_ env: [String: String]) -> (Int, String)? {
            do { _ = try CNIRequest(environment: env); return nil } catch { return (error.code, error.description) }
        }
        let base = ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"]
        #expect(request(base) == nil)
        for key in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            var env = base
            env[key] = nil
            let result = request(env)
            #expect(result?.0 == 4, "\(key)")
            #expect(result?.1.contains(key) == true, "\(key)")
        }
        var env = base
        env["CNI_NETNS"] = nil
        env["CNI_COMMAND"] = "DEL"
        #expect(request(env) == nil, "DEL may come without a netns")
        for (key, value) in [("CNI_COMMAND", "FROB"), ("CNI_CONTAINERID", "-bad"), ("CNI_CONTAINERID", "a b"), ("CNI_IFNAME", "0123456789abcdef"),
                             ("CNI_IFNAME", "a/b"), ("CNI_NETNS", "relative"), ("CNI_ARGS", "IgnoreUnknown")] {
            var env = base
            env[key] = value
            #expect(request(env)?.0 == 4, "\(key)=\(value)")
            #expect(request(env)?.1.contains(key) == true, "\(key)=\(value)")
        }
        env = base
        env["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;EMPTY="
        let parsed = try? CNIRequest(environment: env)
        #expect(parsed?.arg("K8S_POD_NAMESPACE") == "prod")
        #expect(parsed?.arg("EMPTY") == "")
        #expect(try CNIRequest(environment: ["CNI_COMMAND": "GC"]).attachment == nil)
    }

    @Test func badConfigsNameTheField() {
        let cases: [(String, String)] = [
            ("\"side\":\"up\"", "side"),
            ("\"side\":1", "side"),
            ("\"leftTable\":\"x\"", "leftTable"),
            ("\"leftTable\":254", "leftTable"),
            ("\"leftTable\":102", "rightTable"),
            ("\"backend\":\"pf\"", "backend"),
            ("\"stateDir\":\"rel\"", "stateDir"),
            ("\"mtu\":100", "mtu"),
            ("\"gateway\":\"10.0.0.300\"", "gateway"),
            ("\"sdie\":\"left\"", "sdie"),
            ("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":0,\"containerPort\":80}]}", "runtimeConfig.portMappings[0].hostPort"),
            ("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":80,\"containerPort\":65536}]}", "runtimeConfig.portMappings[0].containerPort"),
            ("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":\"80\",\"containerPort\":80}]}", "runtimeConfig.portMappings[0].hostPort"),
            ("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":80,\"containerPort\":80,\"protocol\":\"gre\"}]}", "runtimeConfig.portMappings[0].protocol"),
            ("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":80,\"containerPort\":80},{\"hostPort\":80,\"containerPort\":81}]}", "runtimeConfig.portMappings[1]"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"protocol\":\"tcp\",\"ports\":[{\"start\":90,\"end\":80}]}]}", "runtimeConfig.netOutRules[0].ports[0]"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"protocol\":\"tcp\",\"ports\":[{\"start\":0,\"end\":80}]}]}", "runtimeConfig.netOutRules[0].ports[0].start"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"protocol\":\"gre\"}]}", "runtimeConfig.netOutRules[0].protocol"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"protocol\":9}]}", "runtimeConfig.netOutRules[0].protocol"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"networks\":[{\"start\":\"10.0.0.9\",\"end\":\"10.0.0.1\"}]}]}", "runtimeConfig.netOutRules[0].networks[0]"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"protocol\":\"udp\",\"ports\":\"53, x\"}]}", "runtimeConfig.netOutRules[0].ports"),
            ("\"runtimeConfig\":{\"netOutRules\":[{\"protocol\":\"icmp\",\"ports\":[{\"start\":1}]}]}", "runtimeConfig.netOutRules[0].ports"),
            ("\"firewall\":{\"rules\":[{\"type\":\"X\",\"chain\":\"INPUT\",\"rule\":\"-j ACCEPT\"}]}", "firewall.rules[0].type"),
            ("\"firewall\":{\"rules\":[{\"chain\":\"INPUT\"}]}", "firewall.rules[0].rule"),
            ("\"firewall\":{\"policies\":{\"INPUT\":\"REJECT\"}}", "firewall.policies.INPUT"),
            ("\"firewall\":{\"fwFiles\":[\"a.fw\"]}", "firewall.fwFiles[0]"),
            ("\"outbound\":{\"defaultAction\":\"maybe\"}", "outbound.defaultAction"),
            ("\"outbound\":{\"outboundRules\":[{\"host\":\"x\"}]}", "outbound.outboundRules[0].host"),
            ("\"outbound\":{\"outboundRules\":[{\"host\":\"1.2.3.4\",\"proto\":\"tcp\",\"port\":\"99999\"}]}", "outbound.outboundRules[0].port"),
            ("\"redirect\":{\"inbound\":{\"ports\":[80]}}", "redirect.inbound.proxyPort"),
            ("\"asg\":{\"denyNetworks\":[\"10.0.0.0/33\"]}", "asg.denyNetworks[0]"),
            ("\"prevResult\":{\"ips\":[{\"address\":\"10.0.0.2\"}]}", "prevResult.ips[0].address"),
            ("\"prevResult\":{\"interfaces\":[],\"ips\":[{\"address\":\"10.0.0.2/24\",\"interface\":3}]}", "prevResult.ips[0].interface"),
        ]
        for (extra, field) in cases {
            let result = Self.code { _ = try Self.config(extra) }
            #expect(result?.0 == 7, "\(extra): \(String(describing: result))")
            #expect(result?.1.contains(field) == true, "\(extra) should name \(field): \(String(describing: result))")
        }
        #expect(Self.code { _ = try PluginConfig(Self.json("{\"cniVersion\":\"1.0.0\"}"), command: .add) }?.1.contains("name") == true)
        #expect(Self.code { _ = try PluginConfig(Self.json("[]"), command: .add) }?.0 == 7)
    }

    @Test func portMappingsInBothForms() throws {
        let config = try Self.config("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"TCP\",\"hostIP\":\"\"},{\"host_port\":5353,\"container_port\":53,\"protocol\":\"udp\",\"hostIP\":\"192.0.2.1\"}]}")
        #expect(config.portMappings == [PortMapping(hostPort: 8080, containerPort: 80, proto: .tcp),
                                        PortMapping(hostPort: 5353, containerPort: 53, proto: .udp, hostIP: IPAddress("192.0.2.1"))])
    }

    @Test func netOutRulesParseTextPortsAndICMPAny() throws {
        let config = try Self.config("""
            "runtimeConfig":{"netOutRules":[
              {"protocol":"tcp","networks":[{"start":"10.0.0.0","end":"10.0.0.255"}],"ports":"80, 443,8000 - 8100"},
              {"protocol":"icmp","icmp_info":{"type":-1,"code":-1}},
              {"protocol":3,"icmp_info":{"type":8}},
              {"protocol":"all","log":true}]}
            """)
        let rules = try #require(config.netOutRules)
        #expect(rules[0].ports == [80...80, 443...443, 8000...8100])
        #expect(rules[1].proto == .icmp && rules[1].icmpType == nil && rules[1].icmpCode == nil)
        #expect(rules[2].icmpType == 8 && rules[2].icmpCode == nil)
        #expect(rules[3].proto == .all && rules[3].log)
    }

    @Test func resultsAreRenderedPerVersion() throws {
        let prev = try CNIResult(Self.json("""
            {"cniVersion":"0.4.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/run/netns/c"}],
             "ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1","interface":1},{"version":"6","address":"fd00::2/64","interface":1}],
             "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.1.0.1"]},"x-extra":1.5}
            """))
        #expect(prev.ips(of: "eth0", sandbox: "/run/netns/c").map(\.address.description) == ["10.1.0.2/24", "fd00::2/64"])
        #expect(prev.ips(of: "eth1", sandbox: "/run/netns/c").isEmpty)
        let new = prev.rendered(as: .v1_0_0)
        #expect(new["cniVersion"]?.string == "1.0.0")
        #expect(new["ips"]?.array?.allSatisfy { $0["version"] == nil } == true)
        #expect(new["x-extra"] == .decimal("1.5"), "unknown fields pass through unchanged")
        let old = try CNIResult(new).rendered(as: .v0_3_1)
        #expect(old["ips"]?.array?.map { $0["version"]?.string } == ["4", "6"])
        #expect(String(decoding: old.compact(), as: UTF8.self).hasPrefix("{\"cniVersion\":\"0.3.1\""))
    }

    @Test func errorsAreTheSpecsJSON() {
        let error = CNIError(7, "invalid network configuration", details: "side: \"up\"")
        #expect(String(decoding: error.json(cniVersion: "1.1.0").compact(), as: UTF8.self)
                == #"{"cniVersion":"1.1.0","code":7,"msg":"invalid network configuration","details":"side: \"up\""}"#)
    }

    @Test func attachmentKeysSeparateNetworksAndAttachments() {
        let a = Attachment(network: "left", id: AttachmentID(containerID: "c1", ifname: "eth0"))
        let b = Attachment(network: "left", id: AttachmentID(containerID: "c1", ifname: "eth1"))
        let c = Attachment(network: "right", id: AttachmentID(containerID: "c1", ifname: "eth0"))
        #expect(Set([a.key, b.key, c.key]).count == 3)
        #expect(a.key.prefix(9) == b.key.prefix(9), "one network's keys share a prefix")
        #expect(a.key.prefix(8) != c.key.prefix(8))
        #expect(a.owner.name == "cni-" + a.key && a.owner.name.count <= 32)
        #expect(a.key == Attachment(network: "left", id: AttachmentID(containerID: "c1", ifname: "eth0")).key, "stable")
    }
}
