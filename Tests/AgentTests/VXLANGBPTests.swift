import NetNS
import NFTables
import Policy
import RuleEngine
import Testing
import TestSupport

/// Across nodes the source group's tag travels as the packet mark in the VXLAN group-based-policy
/// header: two node namespaces joined by an underlay veth and a `vxlan … gbp` link, a container
/// behind each, and on each node the ruleset the enforcement planner makes for its containers,
/// applied by the nftables backend. Node 2's chain for B accepts only the tag node 1 set on A's
/// packets: TCP passes with a policy for A's group and is rejected with a policy for another group.
@Suite("policy tags across nodes over VXLAN GBP", .enabled(if: TestEnv.privileged), .serialized)
struct VXLANGBPTests {
    static let overlay = IPPrefix("10.250.0.0/16")!

    func withNodes(_ body: (_ a: TestNamespace, _ node1: TestNamespace, _ node2: TestNamespace, _ b: TestNamespace) throws -> Void) throws {
        try withNamespaces(["gbpa", "gbpn1", "gbpn2", "gbpb"]) { ns in
            let (a, node1, node2, b) = (ns[0], ns[1], ns[2], ns[3])
            try connect(node1, "ul", ["192.168.77.1/24"], node2, "ul", ["192.168.77.2/24"])
            try connect(a, "eth0", ["10.250.1.2/24"], node1, "ca", ["10.250.1.1/24"])
            try connect(b, "eth0", ["10.250.2.2/24"], node2, "cb", ["10.250.2.1/24"])
            _ = try a.ip("route add default via 10.250.1.1")
            _ = try b.ip("route add default via 10.250.2.1")
            for (node, local, remote, address, peer, far) in [(node1, "192.168.77.1", "192.168.77.2", "10.250.255.1/30", "10.250.255.2", "10.250.2.0/24"),
                                                              (node2, "192.168.77.2", "192.168.77.1", "10.250.255.2/30", "10.250.255.1", "10.250.1.0/24")] {
                _ = try node.ip("link add vx type vxlan id 42 local \(local) remote \(remote) dstport 4789 gbp dev ul")
                _ = try node.ip("addr add \(address) dev vx")
                _ = try node.ip("link set vx up")
                _ = try node.ip("route add \(far) via \(peer)")
                _ = try node.mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            }
            try body(a, node1, node2, b)
        }
    }

    /// Each node enforces what the planner makes of `policies` for its own container.
    func enforce(_ policies: [Policy], node1: TestNamespace, node2: TestNamespace) throws {
        let backend = NFTablesBackend()
        let plans = [(node1, LocalContainer(address: IPAddress("10.250.1.2")!, groupID: "ga")),
                     (node2, LocalContainer(address: IPAddress("10.250.2.2")!, groupID: "gb"))]
        for (node, container) in plans {
            let ruleset = try EnforcementPlanner.plan(policies, containers: [container], overlay: Self.overlay, style: .sets)
            _ = try NetworkNamespace.run(path: node.path) { try backend.apply(ruleset, previous: Ruleset(owner: EnforcementPlanner.owner)) }
        }
    }

    static func policy(from group: String, tag: UInt32) -> Policy {
        Policy(sourceID: group, sourceTag: tag, destinationID: "gb", destinationTag: 2, proto: .tcp, ports: 8080...8080)
    }

    @Test func theTagCrossesTheOverlay() throws {
        try withNodes { a, node1, node2, b in
            // Plain routing works before any rule.
            _ = try TCPProbe.startEchoServer(in: b, address: "10.250.2.2", port: 8080)
            #expect(try TCPProbe.echo(from: a, to: "10.250.2.2", port: 8080), "the overlay routes")

            // A policy for A's group (tag 0x1): node 1 marks A's packets, node 2 accepts that mark.
            try enforce([Self.policy(from: "ga", tag: 1)], node1: node1, node2: node2)
            #expect(try node1.mustRun(["nft", "list", "ruleset"]).contains("meta mark set 0x00000001"))
            let guarded = try node2.mustRun(["nft", "list", "ruleset"])
            #expect(guarded.contains("tcp dport 8080 ip daddr . meta mark @c2c-0afa0202-t8080 counter packets 0 bytes 0 accept"), "\(guarded)")
            #expect(guarded.contains("10.250.2.2 . 0x00000001"), "\(guarded)")
            _ = try TCPProbe.startEchoServer(in: b, address: "10.250.2.2", port: 8080)
            #expect(try TCPProbe.echo(from: a, to: "10.250.2.2", port: 8080), "the tag set on node 1 arrives on node 2")

            // Node 2 now allows only tag 0x3 (another group); node 1 no longer marks A's packets
            // with a tag node 2 accepts: rejected.
            try enforce([Self.policy(from: "gz", tag: 3)], node1: node1, node2: node2)
            _ = try TCPProbe.startEchoServer(in: b, address: "10.250.2.2", port: 8080)
            #expect(try !TCPProbe.echo(from: a, to: "10.250.2.2", port: 8080, timeoutMs: 1000), "another group's tag is not A's")
            #expect(try TCPProbe.echo(from: node2, to: "10.250.2.2", port: 8080), "the server was listening (node 2 itself is not overlay traffic)")
        }
    }
}
