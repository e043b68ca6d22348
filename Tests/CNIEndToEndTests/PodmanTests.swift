import Foundation
import Testing
import TestSupport

/// podman (CNI network backend, runc) inside a throwaway "host" namespace, with its storage, run
/// directory and network configs in a scratch directory and a local busybox image; the machine's
/// own networking and podman state are left alone.
///
///   left ns 10.81.1.200 ─┐                         ┌─ router ns 10.81.2.1 ── beyond ns 10.82.0.2
///                  [bridge cnie2e-pl 10.81.1.1]   [bridge cnie2e-pr]
///                        └── eth0 [ VNF container ] eth1 ──┘
///   ext ns 10.81.3.2 ── cnie2e-up 10.81.3.1 (host)
///
/// Both networks are conflists as podman's CNI backend writes them (cniVersion 0.4.0): bridge +
/// host-local, then docknfv with side left / right. The left bridge is the host's gateway (and
/// the container's main default route, podman's usual setup); the right bridge is plain L2 and its
/// gateway is the router namespace. Ports are published on the left side only: podman hands
/// `-p` to every network whose plugins declare `portMappings`, and two attachments mapping the
/// same host port would race for it.
final class PodmanLab {
    let scratch: ScratchDir
    let plugins: PluginDir
    let host: TestNamespace
    var stateDir: String { scratch.file("state") }
    static let image = "localhost/dnfvt-busybox"
    static let left = "dnfvt-left", right = "dnfvt-right"
    static let leftBridge = "cnie2e-pl", rightBridge = "cnie2e-pr"

    init(host: TestNamespace, scratch: ScratchDir) throws {
        self.host = host
        self.scratch = scratch
        plugins = try PluginDir(in: scratch)
        for tool in ["/usr/bin/podman", "/usr/sbin/runc", "/bin/busybox"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw TestFailure("\(tool) is missing: install podman, runc and busybox-static (scripts/lib/common.sh PEER_PACKAGES)")
        }
        for dir in ["net", "root", "runroot", "tmp", "state", "ipam", "rootfs/bin"] {
            try FileManager.default.createDirectory(atPath: scratch.file(dir), withIntermediateDirectories: true)
        }
        // crun fails on this kind of VM's cgroups (runc works); runc cannot raise RLIMIT_NPROC
        // without CAP_SYS_RESOURCE, so the container gets limits at or below ours.
        _ = try scratch.write("containers.conf", """
            [containers]
            default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
            [network]
            network_backend = "cni"
            cni_plugin_dirs = ["\(plugins.path)", "/usr/lib/cni"]
            network_config_dir = "\(scratch.file("net"))"
            [engine]
            runtime = "runc"
            cgroup_manager = "cgroupfs"
            events_logger = "none"
            tmp_dir = "\(scratch.file("tmp"))"
            """)
        _ = try scratch.write("storage.conf", """
            [storage]
            driver = "vfs"
            graphroot = "\(scratch.file("root"))"
            runroot = "\(scratch.file("runroot"))"
            """)
        // The image: busybox-static alone (no registry to pull from).
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: scratch.file("rootfs/bin/busybox"))
        for applet in ["sh", "cat"] { try FileManager.default.createSymbolicLink(atPath: scratch.file("rootfs/bin/\(applet)"), withDestinationPath: "busybox") }
        try mustRun(["tar", "-C", scratch.file("rootfs"), "-cf", scratch.file("rootfs.tar"), "."])
        try mustPodman(["import", scratch.file("rootfs.tar"), Self.image])

        try host.mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for bridge in [Self.leftBridge, Self.rightBridge] {
            _ = try host.ip("link add \(bridge) type bridge")
            _ = try host.ip("link set \(bridge) up")
        }
        _ = try scratch.write("net/\(Self.left).conflist", conflist(
            version: "0.4.0", name: Self.left, bridge: Self.leftBridge, subnet: "10.81.1.0/24", gateway: "10.81.1.1", defaultRoute: true,
            ipamDir: scratch.file("ipam"), docknfv: #""side":"left","stateDir":"\#(stateDir)","capabilities":{"portMappings":true}"#))
        _ = try scratch.write("net/\(Self.right).conflist", conflist(
            version: "0.4.0", name: Self.right, bridge: Self.rightBridge, isGateway: false, subnet: "10.81.2.0/24", gateway: "10.81.2.1",
            ipamDir: scratch.file("ipam"), docknfv: #""side":"right","stateDir":"\#(stateDir)""#))
    }

    /// podman in the host namespace (nsenter: its mounts stay visible to everyone, unlike under
    /// `ip netns exec`), with this lab's configuration; killed after a minute.
    @discardableResult
    func podman(_ arguments: [String]) throws -> CommandResult {
        try runCommand(["timeout", "60", "nsenter", "--net=\(host.path)", "podman", "--root", scratch.file("root"), "--runroot", scratch.file("runroot"),
                        "--network-config-dir", scratch.file("net")] + arguments,
                       environment: environment(adding: ["CONTAINERS_CONF": scratch.file("containers.conf"),
                                                         "CONTAINERS_STORAGE_CONF": scratch.file("storage.conf")]))
    }

    @discardableResult
    func mustPodman(_ arguments: [String]) throws -> String {
        let result = try podman(arguments)
        guard result.succeeded else { throw TestFailure("podman \(arguments.joined(separator: " ")): \(result)") }
        return result.stdout
    }

    /// A namespace attached to one of the lab's bridges through a veth.
    func attach(_ ns: TestNamespace, to bridge: String, address: String) throws {
        let port = "cnie2e-" + ns.name.suffix(6)
        try connect(ns, "eth0", [address], host, port, [])
        _ = try host.ip("link set \(port) master \(bridge)")
    }

    /// The VNF: a container on both networks, forwarding, with an echo server on port 80.
    struct Container {
        let name: String
        /// The container's namespace, kept reachable by a bind mount of our own (podman's own
        /// path goes away with the container; ours lets the test look inside after the DEL).
        let netns: String
        let leftAddress: String, rightAddress: String
    }

    func runVNF(_ name: String, publish: [String] = []) throws -> Container {
        try mustPodman(["run", "-d", "--name", name, "--network", "\(Self.left),\(Self.right)", "--sysctl", "net.ipv4.ip_forward=1"]
                       + publish.flatMap { ["-p", $0] } + [Self.image, "/bin/busybox", "nc", "-ll", "-p", "80", "-e", "/bin/cat"])
        let sandbox = try mustPodman(["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name]).trimmingCharacters(in: .whitespacesAndNewlines)
        let kept = scratch.file("netns-\(name)")
        guard FileManager.default.createFile(atPath: kept, contents: nil) else { throw TestFailure("cannot create \(kept)") }
        try mustRun(["mount", "--bind", sandbox, kept])
        let networks = try mustPodman(["inspect", "--format", "{{json .NetworkSettings.Networks}}", name])
        let parsed = try JSONSerialization.jsonObject(with: Data(networks.utf8)) as? [String: [String: Any]] ?? [:]
        guard let left = parsed[Self.left]?["IPAddress"] as? String, let right = parsed[Self.right]?["IPAddress"] as? String else {
            throw TestFailure("podman inspect gave no addresses: \(networks)")
        }
        return Container(name: name, netns: kept, leftAddress: left, rightAddress: right)
    }

    /// The container's interface holding `address`.
    func interface(of container: Container, holding address: String) throws -> String {
        let lines = try mustInNetns(container.netns, ["ip", "-o", "-4", "addr", "show"]).split(separator: "\n")
        guard let line = lines.first(where: { $0.contains(" \(address)/") }) else { throw TestFailure("no interface holds \(address)") }
        return String(line.split(separator: " ")[1])
    }

    /// Removes every container, unmounts what is left under the scratch directory (our netns
    /// bind mounts, or podman's if it failed half-way) and removes it.
    func tearDown() {
        _ = try? podman(["rm", "-a", "-f", "-t", "0"])
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let mine = mounts.split(separator: "\n").compactMap { $0.split(separator: " ").dropFirst(4).first.map(String.init) }
            .filter { $0.hasPrefix(scratch.path) }.sorted().reversed()
        for path in mine { _ = try? runCommand(["umount", "-l", path]) }
        scratch.remove()
    }

    static func with(_ roles: [String], _ body: (PodmanLab, [TestNamespace]) throws -> Void) throws {
        let scratch = try ScratchDir("podman")
        try withNamespaces(["phost"] + roles) { ns in
            let lab: PodmanLab
            do { lab = try PodmanLab(host: ns[0], scratch: scratch) } catch { scratch.remove(); throw error }
            defer { lab.tearDown() }
            try body(lab, Array(ns.dropFirst()))
        }
    }
}

extension CNIEndToEndTests {
    @Suite("podman with the CNI backend") struct Podman {
        /// Issue 9, tests: traffic from a host on the left network crosses the container to a host
        /// beyond the right network and back; after `podman rm -f` nothing of docknfv remains.
        @Test func leftToRightThroughTheVNFAndNothingLeftAfterRemoval() throws {
            try PodmanLab.with(["pleft", "prtr", "pbeyon"]) { lab, ns in
                let (left, router, beyond) = (ns[0], ns[1], ns[2])
                try lab.attach(left, to: PodmanLab.leftBridge, address: "10.81.1.200/24")
                try lab.attach(router, to: PodmanLab.rightBridge, address: "10.81.2.1/24")
                try connect(router, "eth1", ["10.82.0.1/24"], beyond, "eth0", ["10.82.0.2/24"])
                try router.mustRun(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
                _ = try beyond.ip("route add default via 10.82.0.1")

                let vnf = try lab.runVNF("dnfvt-vnf1")
                let eth0 = try lab.interface(of: vnf, holding: vnf.leftAddress), eth1 = try lab.interface(of: vnf, holding: vnf.rightAddress)
                // The only way from left to beyond and back is through the VNF.
                _ = try left.ip("route add 10.82.0.0/24 via \(vnf.leftAddress)")
                _ = try router.ip("route add 10.81.1.0/24 via \(vnf.rightAddress)")

                // What docknfv set up in the container: one table per side, each side's iif rule
                // looking up the other side's table.
                let rules = try Leftovers.ipRules(vnf.netns)
                #expect(rules.count == 2, "\(rules)")
                #expect(rules.contains { $0.contains("iif \(eth0) lookup 102") }, "\(rules)")
                #expect(rules.contains { $0.contains("iif \(eth1) lookup 101") }, "\(rules)")
                let routes = try Leftovers.routes(vnf.netns)
                #expect(routes.contains { $0.hasPrefix("default via 10.81.1.1 dev \(eth0) table 101") }, "\(routes)")
                #expect(routes.contains { $0.hasPrefix("default via 10.81.2.1 dev \(eth1) table 102") }, "\(routes)")
                let records = Leftovers.records(lab.stateDir)
                #expect(Set(records.map(\.network)) == [PodmanLab.left, PodmanLab.right], "\(records)")

                // ICMP both ways through the VNF: the reply left beyond with TTL 64 and arrives
                // with 62 (router, VNF); a TTL of 1 expires at the VNF's left address.
                let ping = try Traffic.pingTTL(from: left.path, to: "10.82.0.2")
                #expect(ping.reply == 62, "\(ping.output)")
                let expired = try Traffic.pingTTL(from: left.path, to: "10.82.0.2", ttl: 1)
                #expect(expired.output.contains("From \(vnf.leftAddress)") && expired.output.contains("Time to live exceeded"), "\(expired.output)")
                // TCP, unNATed: beyond sees left's own address.
                let peer = PeerAddress()
                _ = try TCPProbe.startEchoServer(in: beyond, address: "10.82.0.2", port: 7100, peer: peer)
                #expect(try TCPProbe.echo(from: left, to: "10.82.0.2", port: 7100))
                #expect(peer.address == "10.81.1.200")

                let keys = records.map(\.owner)
                try lab.mustPodman(["rm", "-f", "-t", "0", vnf.name])
                // Nothing of docknfv anywhere: host and container namespaces (ours is still
                // there: podman's DEL ran in it, the bridge plugin took the interfaces away), the
                // state directory, the machine's own namespace; and libcni's cache of the results.
                let leftovers = try Leftovers.all(host: lab.host.path, containers: [vnf.netns, left.path, router.path], stateDir: lab.stateDir)
                #expect(leftovers.isEmpty, "\(leftovers)")
                let rootTables = try mustRun(["nft", "list", "tables"])
                #expect(!keys.contains { rootTables.contains($0) }, "\(rootTables)")
                let cached = (try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/cni/results")) ?? []
                #expect(!cached.contains { $0.hasPrefix(PodmanLab.left) || $0.hasPrefix(PodmanLab.right) }, "\(cached)")
            }
        }

        /// Issue 9, tests: a port published with `podman -p` (docknfv's `portMappings`
        /// capability) is reachable through the host's addresses, from the host itself and from
        /// outside, and only for destinations local to the host.
        @Test func publishedPortReachableOnlyThroughTheHostsAddresses() throws {
            try PodmanLab.with(["pleft", "pext"]) { lab, ns in
                let (left, ext) = (ns[0], ns[1])
                try lab.attach(left, to: PodmanLab.leftBridge, address: "10.81.1.200/24")
                _ = try left.ip("route add default via 10.81.1.1")
                try connect(lab.host, "cnie2e-up", ["10.81.3.1/24"], ext, "eth0", ["10.81.3.2/24"])
                _ = try ext.ip("route add default via 10.81.3.1")

                let vnf = try lab.runVNF("dnfvt-vnf2", publish: ["8080:80"])
                let served = try waitUntil(timeout: 5, interval: 0.05) { try tcpEcho(from: left.path, to: vnf.leftAddress, port: 80) }
                #expect(served, "the container's echo server did not answer on \(vnf.leftAddress):80")

                // From outside to the host's uplink address (PREROUTING), and from the host to
                // its own addresses (OUTPUT).
                let hostRules = try mustInNetns(lab.host.path, ["nft", "list", "ruleset"])
                #expect(try tcpEcho(from: ext.path, to: "10.81.3.1", port: 8080), "\(hostRules)")
                #expect(try tcpEcho(from: lab.host.path, to: "10.81.3.1", port: 8080))
                #expect(try tcpEcho(from: lab.host.path, to: "10.81.1.1", port: 8080))
                // Port 8080 of an address the host merely routes to is not captured: left's own
                // server answers, and sees ext's address.
                let peer = PeerAddress()
                _ = try TCPProbe.startEchoServer(in: left, address: "10.81.1.200", port: 8080, peer: peer)
                #expect(try TCPProbe.echo(from: ext, to: "10.81.1.200", port: 8080))
                #expect(peer.address == "10.81.3.2", "port 8080 to a routed destination was DNATed")

                try lab.mustPodman(["rm", "-f", "-t", "0", vnf.name])
                #expect(try !tcpEcho(from: ext.path, to: "10.81.3.1", port: 8080))
                let leftovers = try Leftovers.all(host: lab.host.path, containers: [vnf.netns], stateDir: lab.stateDir)
                #expect(leftovers.isEmpty, "\(leftovers)")
            }
        }
    }
}
