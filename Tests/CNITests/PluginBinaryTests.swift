import Foundation
import StateFiles
import Testing
import TestSupport

/// The real `docknfv` binary, driven as a runtime drives it: CNI_* variables, the config on stdin,
/// run in a throwaway "host" namespace with the container's namespace beside it (a veth pair,
/// container eth0 10.70.0.2/24 and fd70::2/64, host end .1). Every command at every version.
@Suite("docknfv CNI binary: protocol", .enabled(if: TestEnv.privileged), .serialized)
struct PluginBinaryTests {
    struct Lab {
        let host: TestNamespace
        let container: TestNamespace
        let stateDir: String

        func env(_ command: String, netns: Bool = true, id: String = "ctr1", ifname: String = "eth0", args: String? = nil) -> [String: String] {
            var env = ["CNI_COMMAND": command, "CNI_PATH": "/usr/lib/cni", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            if ["ADD", "DEL", "CHECK"].contains(command) {
                env["CNI_CONTAINERID"] = id
                env["CNI_IFNAME"] = ifname
                if netns { env["CNI_NETNS"] = container.path }
            }
            if let args { env["CNI_ARGS"] = args }
            return env
        }

        /// Runs the plugin in the host namespace (nsenter: no mount namespace, as a runtime runs it).
        func plugin(_ env: [String: String], _ config: String) throws -> (status: Int32, json: JSON?, raw: String) {
            let result = try runCommand(["nsenter", "--net=\(host.path)", "env", "-i"] + env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                                        + [TestEnv.binary("docknfv")], input: config)
            return (result.status, try? JSON.parse(Array(result.stdout.utf8)), result.stdout + result.stderr)
        }

        func prevResult(_ version: String) -> String {
            let old = version.hasPrefix("0.")
            return """
            {"cniVersion":"\(version)","interfaces":[{"name":"veth0"},{"name":"eth0","sandbox":"\(container.path)"}],
             "ips":[{\(old ? "\"version\":\"4\"," : "")"address":"10.70.0.2/24","gateway":"10.70.0.1","interface":1},
                    {\(old ? "\"version\":\"6\"," : "")"address":"fd70::2/64","gateway":"fd70::1","interface":1}],
             "dns":{}}
            """
        }

        func config(_ version: String, extra: String = "", prev: Bool = true) -> String {
            var text = "{\"cniVersion\":\"\(version)\",\"name\":\"protonet\",\"type\":\"docknfv\",\"stateDir\":\"\(stateDir)\",\"side\":\"left\","
            text += #""firewall":{"rules":[{"chain":"INPUT","rule":"-p tcp --dport 2222 -j DROP","family":"both"}]},"#
            text += #""runtimeConfig":{"netOutRules":[{"protocol":"tcp","networks":[{"start":"10.9.0.0","end":"10.9.0.255"}],"ports":[{"start":443,"end":443}]}]}"#
            if prev { text += ",\"prevResult\":\(prevResult(version))" }
            return text + extra + "}"
        }

        /// docknfv's tables in a namespace, as nft shows them.
        func tables(_ ns: TestNamespace) throws -> [String] {
            try ns.mustRun(["nft", "list", "tables"]).split(separator: "\n").map(String.init).filter { $0.contains("docknfv") }
        }

        func records() -> [String] {
            (try? FileManager.default.subpathsOfDirectory(atPath: stateDir + "/cni").filter { $0.hasSuffix(".json") }) ?? []
        }

        func ourRules() throws -> [String] {
            try container.ip("-4 rule").split(separator: "\n").map(String.init).filter { $0.contains("proto 78") }
                + container.ip("-6 rule").split(separator: "\n").map(String.init).filter { $0.contains("proto 78") }
        }
    }

    func withLab<T>(_ body: (Lab) throws -> T) throws -> T { // also used by PluginFeatureTests
        try withNamespaces(["cnih", "cnic"]) { ns in
            try connect(ns[0], "veth0", ["10.70.0.1/24", "fd70::1/64"], ns[1], "eth0", ["10.70.0.2/24", "fd70::2/64"])
            let dir = NSTemporaryDirectory() + "dnfvt-cni-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            return try body(Lab(host: ns[0], container: ns[1], stateDir: dir))
        }
    }

    @Test(arguments: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    func addCheckDelAtEveryVersion(version: String) throws {
        try withLab { lab in
            let add = try lab.plugin(lab.env("ADD"), lab.config(version))
            #expect(add.status == 0, "\(add.raw)")
            let result = try #require(add.json)
            #expect(result["cniVersion"]?.string == version)
            #expect(result["ips"]?.array?.map { $0["version"]?.string } == (version.hasPrefix("0.") ? ["4", "6"] : [nil, nil]))
            #expect(result["interfaces"]?.array?.count == 2, "prevResult passes through")
            // The kernel holds it: the side's rule per family, its table, the firewall in the
            // container, the ASG chain on the host; one record.
            #expect(try lab.ourRules().count == 2)
            #expect(try lab.container.ip("-4 route show table 101").contains("default via 10.70.0.1 dev eth0"))
            #expect(try lab.tables(lab.container).count == 2 && lab.tables(lab.host).count == 2, "ip and ip6 tables")
            #expect(try lab.host.mustRun(["nft", "list", "ruleset"]).contains("tcp dport 443 counter"))
            #expect(lab.records().count == 1)
            let before = try lab.container.mustRun(["nft", "list", "ruleset"]) + lab.host.mustRun(["nft", "list", "ruleset"])

            // A repeated ADD leaves one copy of everything.
            #expect(try lab.plugin(lab.env("ADD"), lab.config(version)).status == 0)
            #expect(try lab.ourRules().count == 2)
            #expect(try lab.container.mustRun(["nft", "list", "ruleset"]) + lab.host.mustRun(["nft", "list", "ruleset"]) == before)

            let check = try lab.plugin(lab.env("CHECK"), lab.config(version))
            if version < "0.4.0" {
                #expect(check.status != 0 && check.json?["code"]?.int == 1, "CHECK needs 0.4.0: \(check.raw)")
            } else {
                #expect(check.status == 0, "\(check.raw)")
                _ = try lab.container.ip("-4 rule del iif eth0 table 102 priority 100")
                let failed = try lab.plugin(lab.env("CHECK"), lab.config(version))
                #expect(failed.status != 0 && failed.json?["code"]?.int == 101)
                #expect(failed.json?["details"]?.string?.contains("rule") == true, "\(failed.raw)")
            }

            for _ in 0..<2 {
                let del = try lab.plugin(lab.env("DEL"), lab.config(version))
                #expect(del.status == 0 && del.raw.isEmpty, "\(del.raw)")
            }
            #expect(try lab.ourRules().isEmpty)
            #expect(try lab.container.ip("-4 route show table 101").isEmpty == true || (try? lab.container.ip("-4 route show table 101")) == nil)
            #expect(try lab.tables(lab.container).isEmpty && lab.tables(lab.host).isEmpty)
            #expect(lab.records().isEmpty)
        }
    }

    /// A mapped port answers on the host's own addresses, IPv4 and IPv6 (nftables' `fib daddr type
    /// local` guard), and only there: the same port on an address that is not the host's is not
    /// DNATed. After DEL the port is closed again.
    @Test func portMappingsReachTheContainer() throws {
        try withLab { lab in
            let mapped = lab.config("1.0.0").replacingOccurrences(of: "\"runtimeConfig\":{", with: "\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80}],")
            let add = try lab.plugin(lab.env("ADD"), mapped)
            #expect(add.status == 0, "\(add.raw)")
            let ruleset = try lab.host.mustRun(["nft", "list", "ruleset"])
            #expect(ruleset.contains("fib daddr type local"), "\(ruleset)")
            for (address, listen) in [("10.70.0.1", "10.70.0.2"), ("fd70::1", "fd70::2")] {
                let server = try TCPProbe.startEchoServer(in: lab.container, address: listen, port: 80)
                #expect(try TCPProbe.echo(from: lab.host, to: address, port: 8080), "\(address):8080 → \(listen):80")
                _ = server
            }
            // 10.70.0.3 is on the link but not the host's: no DNAT, so nothing answers on 8080.
            _ = try lab.container.ip("addr add 10.70.0.3/24 dev eth0")
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "10.70.0.2", port: 80)
            #expect(try !TCPProbe.echo(from: lab.host, to: "10.70.0.3", port: 8080, timeoutMs: 500))
            #expect(try TCPProbe.echo(from: lab.host, to: "10.70.0.2", port: 80), "the server was listening all along")
            #expect(try lab.plugin(lab.env("CHECK"), mapped).status == 0)
            // Another attachment cannot take the same host port (its DNAT would race ours).
            let clash = try lab.plugin(lab.env("ADD", id: "other"), mapped)
            #expect(clash.status != 0 && clash.json?["code"]?.int == 7 && clash.raw.contains("host port 8080/tcp is already mapped"), "\(clash.raw)")
            #expect(lab.records().count == 1, "the refused ADD left nothing")
            #expect(try lab.plugin(lab.env("DEL"), mapped).status == 0)
            let after = try lab.plugin(lab.env("ADD", id: "other"), mapped)
            #expect(after.status == 0, "the port is free again: \(after.raw)")
            #expect(try lab.plugin(lab.env("DEL", id: "other"), mapped).status == 0)
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "10.70.0.2", port: 80)
            #expect(try !TCPProbe.echo(from: lab.host, to: "10.70.0.1", port: 8080, timeoutMs: 500), "the mapping is gone")
            #expect(try TCPProbe.echo(from: lab.host, to: "10.70.0.2", port: 80), "the server was there")
        }
    }

    /// The same attachment through libiptc: chains of its own in legacy x_tables (what
    /// iptables-legacy-save shows), a working port mapping, CHECK, and nothing left after DEL.
    @Test func iptablesBackend() throws {
        try withLab { lab in
            let config = lab.config("1.0.0", extra: ",\"backend\":\"iptables\"")
                .replacingOccurrences(of: "\"runtimeConfig\":{", with: "\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80}],")
            let add = try lab.plugin(lab.env("ADD"), config)
            #expect(add.status == 0, "\(add.raw)")
            let saved = try lab.host.mustRun(["iptables-legacy-save"])
            #expect(saved.contains("-j DNAT --to-destination 10.70.0.2:80") && saved.contains("--comment \"docknfv cni-"), "\(saved)")
            #expect(try lab.container.mustRun(["ip6tables-legacy-save"]).contains("--dport 2222 -j DROP"))
            #expect(try lab.tables(lab.host).isEmpty, "nothing in nftables")
            _ = try TCPProbe.startEchoServer(in: lab.container, address: "10.70.0.2", port: 80)
            #expect(try TCPProbe.echo(from: lab.host, to: "10.70.0.1", port: 8080))
            #expect(try lab.plugin(lab.env("CHECK"), config).status == 0)
            #expect(try lab.plugin(lab.env("DEL"), config).status == 0)
            for (ns, tool) in [(lab.host, "iptables-legacy-save"), (lab.host, "ip6tables-legacy-save"), (lab.container, "iptables-legacy-save"), (lab.container, "ip6tables-legacy-save")] {
                let left = try ns.mustRun([tool])
                #expect(!left.contains("DN") && !left.contains("docknfv"), "\(tool): \(left)")
            }
            #expect(try lab.ourRules().isEmpty && lab.records().isEmpty)
        }
    }

    @Test func delIsTolerant() throws {
        try withLab { lab in
            #expect(try lab.plugin(lab.env("ADD"), lab.config("1.0.0")).status == 0)
            // No prevResult and no netns: the host's rules and the record still go.
            let del = try lab.plugin(lab.env("DEL", netns: false), lab.config("1.0.0", prev: false))
            #expect(del.status == 0, "\(del.raw)")
            #expect(try lab.tables(lab.host).isEmpty && lab.records().isEmpty)
            // Never added, or a namespace that is gone: success.
            #expect(try lab.plugin(lab.env("DEL", id: "never"), lab.config("1.0.0")).status == 0)
            var gone = lab.env("DEL", id: "gone")
            gone["CNI_NETNS"] = "/run/netns/dnfvt-no-such-ns"
            #expect(try lab.plugin(gone, lab.config("1.0.0")).status == 0)
            // DEL does not read the runtime config (it works from the record): content ADD would
            // refuse is ignored, but the stdin must still be JSON.
            let odd = lab.config("1.0.0").replacingOccurrences(of: #""protocol":"tcp""#, with: #""protocol":"nonsense","protocol":7"#)
            #expect(try lab.plugin(lab.env("DEL", id: "odd"), odd).status == 0)
            let broken = lab.config("1.0.0").replacingOccurrences(of: #""end":443}"#, with: #""end":443,}"#)
            let refused = try lab.plugin(lab.env("DEL", id: "broken"), broken)
            #expect(refused.status != 0 && refused.json?["code"]?.int == 6, "\(refused.raw)")
        }
    }

    @Test func gcRemovesOnlyWhatIsNotValidAndStatusIsCheap() throws {
        try withLab { lab in
            for id in ["keep", "drop"] { #expect(try lab.plugin(lab.env("ADD", id: id), lab.config("1.1.0")).status == 0) }
            #expect(try lab.tables(lab.host).count == 4 && lab.records().count == 2)
            // Another network's attachment, with the same container ID, is not this GC's business.
            let other = lab.config("1.1.0").replacingOccurrences(of: "\"protonet\"", with: "\"othernet\"")
            #expect(try lab.plugin(lab.env("ADD", id: "drop", ifname: "eth0"), other).status == 0)
            let gc = #"{"cniVersion":"1.1.0","name":"protonet","type":"docknfv","stateDir":"\#(lab.stateDir)","cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}]}"#
            let result = try lab.plugin(lab.env("GC"), gc)
            #expect(result.status == 0 && result.raw.isEmpty, "\(result.raw)")
            #expect(try lab.tables(lab.host).count == 4, "keep's and othernet's")
            #expect(lab.records().sorted().map { $0.split(separator: "/").first.map(String.init) ?? "" } == ["othernet", "protonet"])
            // The older key name is accepted too.
            let old = gc.replacingOccurrences(of: "valid-attachments\":[{\"containerID\":\"keep\",\"ifname\":\"eth0\"}]", with: "attachments\":[]")
            #expect(try lab.plugin(lab.env("GC"), old).status == 0)
            #expect(try lab.tables(lab.host).count == 2 && lab.records().count == 1)

            let status = try lab.plugin(lab.env("STATUS"), #"{"cniVersion":"1.1.0","name":"protonet","type":"docknfv","stateDir":"\#(lab.stateDir)"}"#)
            #expect(status.status == 0 && status.raw.isEmpty, "\(status.raw)")
            #expect(try lab.plugin(lab.env("DEL", id: "drop"), other).status == 0)
        }
    }

    @Test func badInputGetsTheSpecsCodeAndLeavesNothing() throws {
        try withLab { lab in
            let cases: [([String: String], String, Int, String)] = [
                (lab.env("ADD"), "{not json", 6, "decode"),
                (lab.env("ADD"), lab.config("9.9.9"), 1, "9.9.9"),
                (lab.env("ADD", netns: false), lab.config("1.0.0"), 4, "CNI_NETNS"),
                (lab.env("ADD", args: "NOEQUALS"), lab.config("1.0.0"), 4, "CNI_ARGS"),
                (lab.env("ADD"), lab.config("1.0.0", extra: ",\"side\":\"middle\"").replacingOccurrences(of: "\"side\":\"left\",", with: ""), 7, "side"),
                (lab.env("ADD"), lab.config("1.0.0", extra: ",\"runtimeConfig2\":{}"), 7, "runtimeConfig2"),
                (lab.env("ADD", ifname: "eth9"), lab.config("1.0.0"), 100, "eth9"),
                (lab.env("FROB"), lab.config("1.0.0"), 4, "CNI_COMMAND"),
            ]
            for (env, config, code, word) in cases {
                let result = try lab.plugin(env, config)
                #expect(result.status != 0, "\(word)")
                #expect(result.json?["code"]?.int == code, "\(word): \(result.raw)")
                #expect(result.json?["msg"] != nil && result.raw.contains(word), "\(word): \(result.raw)")
            }
            // Fails inside the container after the host's rules went in: those are rolled back.
            let late = lab.config("1.0.0").replacingOccurrences(of: "-p tcp --dport 2222 -j DROP", with: "-m set --match-set nosuchset src -j DROP")
            let result = try lab.plugin(lab.env("ADD"), late)
            #expect(result.status != 0 && result.raw.contains("nosuchset"), "\(result.raw)")
            #expect(try lab.tables(lab.host).isEmpty && lab.tables(lab.container).isEmpty)
            #expect(try lab.ourRules().isEmpty && lab.records().isEmpty)
        }
    }
}
