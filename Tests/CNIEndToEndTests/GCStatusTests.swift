import Foundation
import Testing
import TestSupport

extension CNIEndToEndTests {
    /// GC and STATUS came with CNI 1.1.0, after Debian's libcni: these tests set up attachments
    /// through libcni and then run the plugin exactly as the 1.1.0 spec says a runtime does —
    /// CNI_COMMAND and CNI_PATH in an otherwise empty environment, the plugin's configuration from
    /// the list with the list's name and cniVersion, and for GC `cni.dev/valid-attachments`.
    @Suite("GC and STATUS as the CNI 1.1.0 spec drives them") struct GCStatus {
        static let capabilities = #"{"netOutRules":[{"protocol":"tcp","networks":[{"start":"10.86.9.1","end":"10.86.9.1"}],"ports":[{"start":443,"end":443}]}]}"#

        /// The docknfv binary run directly, as a 1.1.0 runtime runs it.
        struct Runtime11 {
            let host: TestNamespace
            let stateDir: String
            let plugins: PluginDir

            /// The docknfv entry of network `name`'s list as a 1.1.0 runtime passes it, plus `extra` members.
            func pluginConfig(_ name: String, side: String, extra: String = "") -> String {
                #"{"cniVersion":"1.1.0","name":"\#(name)","type":"docknfv","side":"\#(side)","stateDir":"\#(stateDir)","capabilities":{"netOutRules":true}\#(extra)}"#
            }

            func plugin(_ command: String, _ config: String) throws -> CommandResult {
                try inNetns(host.path, [TestEnv.binary("docknfv")], environment: ["CNI_COMMAND": command, "CNI_PATH": plugins.cniPath], input: config)
            }

            func gc(network: String, side: String, key: String = "cni.dev/valid-attachments", valid: [(String, String)]) throws -> CommandResult {
                let list = valid.map { #"{"containerID":"\#($0.0)","ifname":"\#($0.1)"}"# }.joined(separator: ",")
                return try plugin("GC", pluginConfig(network, side: side, extra: #","\#(key)":[\#(list)]"#))
            }

            /// (network, container ID) → owner, from the records.
            func owners() -> [String: String] {
                Dictionary(uniqueKeysWithValues: Leftovers.records(stateDir).map { ("\($0.network)/\($0.containerID)", $0.owner) })
            }

            /// The owners whose nftables table the host namespace holds.
            func tables() throws -> Set<String> {
                Set(try Leftovers.nftTables(host.path).compactMap { $0.split(separator: " ").last.map { String($0.dropFirst("docknfv-".count)) } })
            }
        }

        /// GC removes exactly the attachments of its network that are not listed — whether the
        /// container's namespace still exists, is gone, or the record was lost — and leaves the
        /// listed ones and another network's (even with the same container ID) untouched.
        @Test func gcRemovesOnlyUnlistedAttachmentsOfItsNetwork() throws {
            let scratch = try ScratchDir("gc")
            defer { scratch.remove() }
            try withNamespaces(["ghost", "gc1", "gc2", "gc3", "gc4"]) { ns in
                let host = ns[0], (c1, c2, c3, c4) = (ns[1], ns[2], ns[3], ns[4])
                let stateDir = scratch.file("state"), plugins = try PluginDir(in: scratch)
                func list(_ name: String, _ bridge: String, _ subnet: String, _ side: String) throws -> LibCNIRuntime {
                    let file = try scratch.write("\(name).conflist", conflist(
                        version: "1.0.0", name: name, bridge: bridge, subnet: subnet, ipamDir: scratch.file("ipam"),
                        docknfv: #""side":"\#(side)","stateDir":"\#(stateDir)","capabilities":{"netOutRules":true}"#))
                    return LibCNIRuntime(host: host, conflist: file, plugins: plugins, cacheDir: scratch.file("cache"))
                }
                let lab = Runtime11(host: host, stateDir: stateDir, plugins: plugins)
                let a = try list("dnfvt-gca", "cnie2e-ga", "10.86.1.0/24", "left"), b = try list("dnfvt-gcb", "cnie2e-gb", "10.86.2.0/24", "right")
                for (index, container) in [c1, c2, c3, c4].enumerated() {
                    try a.must("add", id: "gc-ctr-\(index + 1)", netns: container.path, capabilities: Self.capabilities)
                }
                try b.must("add", id: "gc-ctr-2", netns: c2.path, ifname: "eth1", capabilities: Self.capabilities)
                let owners = lab.owners()
                let (a1, a2, a3, a4, b2) = (owners["dnfvt-gca/gc-ctr-1"]!, owners["dnfvt-gca/gc-ctr-2"]!, owners["dnfvt-gca/gc-ctr-3"]!,
                                            owners["dnfvt-gca/gc-ctr-4"]!, owners["dnfvt-gcb/gc-ctr-2"]!)
                #expect(try lab.tables() == [a1, a2, a3, a4, b2])
                #expect(try Leftovers.ipRules(c2.path).count == 2)

                // Container 3 went away without a DEL; container 4's record was lost.
                c3.delete()
                try FileManager.default.removeItem(atPath: Leftovers.records(stateDir).first { $0.owner == a4 }!.path)

                // The older name of the list; 3 and 4 go.
                let first = try lab.gc(network: "dnfvt-gca", side: "left", key: "cni.dev/attachments", valid: [("gc-ctr-1", "eth0"), ("gc-ctr-2", "eth0")])
                #expect(first.succeeded && first.stdout.isEmpty, "\(first)")
                #expect(try lab.tables() == [a1, a2, b2])
                #expect(Set(lab.owners().values) == [a1, a2, b2])

                // 2 goes too: its table, its record, and in its namespace its iif rule and
                // table 101 — not network B's rule and table 102 for the same container.
                let second = try lab.gc(network: "dnfvt-gca", side: "left", valid: [("gc-ctr-1", "eth0")])
                #expect(second.succeeded && second.stdout.isEmpty, "\(second)")
                #expect(try lab.tables() == [a1, b2])
                #expect(Set(lab.owners().values) == [a1, b2])
                let rules = try Leftovers.ipRules(c2.path), routes = try Leftovers.routes(c2.path)
                #expect(rules.count == 1 && rules[0].contains("iif eth1 lookup 101"), "\(rules)")
                #expect(!routes.isEmpty && routes.allSatisfy { $0.contains("table 102") }, "\(routes)")
                #expect(try Leftovers.ipRules(c1.path).contains { $0.contains("iif eth0 lookup 102") })

                // The listed attachment and network B's pass CHECK; GC of B keeps what it lists.
                try a.must("check", id: "gc-ctr-1", netns: c1.path, capabilities: Self.capabilities)
                try b.must("check", id: "gc-ctr-2", netns: c2.path, ifname: "eth1", capabilities: Self.capabilities)
                let third = try lab.gc(network: "dnfvt-gcb", side: "right", valid: [("gc-ctr-2", "eth1")])
                #expect(third.succeeded, "\(third)")
                #expect(try lab.tables() == [a1, b2])

                // DEL after GC (and of a container whose namespace is gone) still succeeds.
                for (index, container) in [c1, c2, c3, c4].enumerated() {
                    try a.must("del", id: "gc-ctr-\(index + 1)", netns: container.path, capabilities: Self.capabilities)
                }
                try b.must("del", id: "gc-ctr-2", netns: c2.path, ifname: "eth1", capabilities: Self.capabilities)
                let leftovers = try Leftovers.all(host: host.path, containers: [c1.path, c2.path, c4.path], stateDir: stateDir)
                #expect(leftovers.isEmpty, "\(leftovers)")
            }
        }

        /// STATUS: success and no output when the plugin can work; the spec's error 50 when its
        /// state directory cannot be used; and only from cniVersion 1.1.0.
        @Test func statusReportsWhetherThePluginCanWork() throws {
            let scratch = try ScratchDir("status")
            defer { scratch.remove() }
            try withNamespaces(["shost"]) { ns in
                let lab = Runtime11(host: ns[0], stateDir: scratch.file("state"), plugins: try PluginDir(in: scratch))
                let ok = try lab.plugin("STATUS", lab.pluginConfig("dnfvt-status", side: "left"))
                #expect(ok.status == 0 && ok.stdout.isEmpty, "\(ok)")

                _ = try scratch.write("plain-file", "")
                let broken = Runtime11(host: ns[0], stateDir: scratch.file("plain-file/state"), plugins: lab.plugins)
                let failed = try broken.plugin("STATUS", broken.pluginConfig("dnfvt-status", side: "left"))
                let error = try JSONSerialization.jsonObject(with: Data(failed.stdout.utf8)) as? [String: Any]
                #expect(failed.status != 0 && error?["code"] as? Int == 50, "\(failed)")
                let details = error?["details"] as? String
                #expect(details?.contains("plain-file") == true, "\(failed)")

                let old = try lab.plugin("STATUS", lab.pluginConfig("dnfvt-status", side: "left").replacingOccurrences(of: "1.1.0", with: "1.0.0"))
                let oldError = try JSONSerialization.jsonObject(with: Data(old.stdout.utf8)) as? [String: Any]
                #expect(old.status != 0 && oldError?["code"] as? Int == 1, "\(old)")
            }
        }
    }
}
