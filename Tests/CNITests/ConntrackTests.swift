import Conntrack
import NetNS
import NetTypes
import Testing
import TestSupport

/// ctnetlink against the kernel: UDP flows to a port are forgotten, others stay (conntrack is the oracle).
@Suite("Conntrack over ctnetlink", .enabled(if: TestEnv.privileged))
struct ConntrackTests {
    @Test func udpFlowsOfOnePortAreDeleted() throws {
        try withNamespaces(["ctra", "ctrb"]) { ns in
            try connect(ns[0], "eth0", ["10.72.0.1/24"], ns[1], "eth0", ["10.72.0.2/24"])
            // Conntrack tracks a namespace's packets only once something there uses it.
            _ = try ns[0].mustRun(["nft", "add table ip t; add chain ip t c { type filter hook output priority 0; ct state new accept; }"])
            for port in [5353, 5354] {
                _ = try ns[0].run(["bash", "-c", "echo x > /dev/udp/10.72.0.2/\(port)"])
            }
            func flows() throws -> String { try ns[0].run(["conntrack", "-L", "-p", "udp"]).stdout }
            let before = try flows()
            #expect(before.contains("dport=5353") && before.contains("dport=5354"), "\(before)")
            let deleted = try NetworkNamespace.run(path: ns[0].path) {
                try Conntrack.delete(proto: 17, originalDestinationPort: 5353, replySources: [IPAddress("10.72.0.2")!])
            }
            #expect(deleted == 1)
            #expect(try !flows().contains("dport=5353"))
            #expect(try flows().contains("dport=5354"), "another port's flow stays")
            // Another source's flows stay too; nothing left to delete is fine.
            #expect(try NetworkNamespace.run(path: ns[0].path) { try Conntrack.delete(proto: 17, originalDestinationPort: 5354, replySources: [IPAddress("10.72.0.9")!]) } == 0)
            #expect(try flows().contains("dport=5354"))
        }
    }
}
