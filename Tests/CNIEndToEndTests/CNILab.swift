import Foundation
import Testing
import TestSupport

/// Every test of this target, one at a time: podman, twenty parallel ADDs and traffic probes
/// would otherwise compete for the same two cores and make each other's timeouts.
@Suite("docknfv CNI plugin end to end", .enabled(if: TestEnv.privileged), .serialized)
struct CNIEndToEndTests {}

/// A scratch directory under /tmp, removed by `remove()` (callers `defer` it).
struct ScratchDir {
    let path: String

    init(_ role: String) throws {
        path = NSTemporaryDirectory() + "\(TestNamespace.prefix)-cni-\(role)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String) throws -> String {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
        return file(name)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A CNI plugin directory holding the built `docknfv` (a symlink); the reference plugins stay in
/// /usr/lib/cni, the second directory of `cniPath`.
struct PluginDir {
    let path: String
    var cniPath: String { "\(path):/usr/lib/cni" }

    init(in scratch: ScratchDir) throws {
        path = scratch.file("bin")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let binary = TestEnv.binary("docknfv")
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw TestFailure("\(binary) is not built") }
        for plugin in ["bridge", "host-local"] where !FileManager.default.isExecutableFile(atPath: "/usr/lib/cni/\(plugin)") {
            throw TestFailure("/usr/lib/cni/\(plugin) is missing: install containernetworking-plugins (scripts/lib/common.sh PEER_PACKAGES)")
        }
        try FileManager.default.createSymbolicLink(atPath: path + "/docknfv", withDestinationPath: binary)
    }
}

/// Runs `arguments` in the network namespace at `netns` (`nsenter --net`, no new mount
/// namespace: what a runtime does when it runs plugins, and cheap).
@discardableResult
func inNetns(_ netns: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil) throws -> CommandResult {
    try runCommand(["nsenter", "--net=\(netns)"] + arguments, environment: environment, input: input)
}

@discardableResult
func mustInNetns(_ netns: String, _ arguments: [String]) throws -> String {
    let result = try inNetns(netns, arguments)
    guard result.succeeded else { throw TestFailure("\(arguments.joined(separator: " ")) in \(netns): \(result)") }
    return result.stdout
}

func environment(adding extra: [String: String]) -> [String: String] {
    ProcessInfo.processInfo.environment.merging(extra) { $1 }
}

/// A minimal CNI network list: the reference bridge plugin with host-local, then docknfv with
/// `docknfv`'s extra keys (JSON members, already encoded).
func conflist(version: String, name: String, bridge: String, isGateway: Bool = true, subnet: String, gateway: String? = nil,
              defaultRoute: Bool = false, ipamDir: String, docknfv: String) -> String {
    let range = "{\"subnet\":\"\(subnet)\"\(gateway.map { ",\"gateway\":\"\($0)\"" } ?? "")}"
    return """
    {"cniVersion":"\(version)","name":"\(name)","plugins":[
     {"type":"bridge","bridge":"\(bridge)","isGateway":\(isGateway),"ipMasq":false,
      "ipam":{"type":"host-local","dataDir":"\(ipamDir)",\(defaultRoute ? "\"routes\":[{\"dst\":\"0.0.0.0/0\"}]," : "")"ranges":[[\(range)]]}},
     {"type":"docknfv",\(docknfv)}]}
    """
}

// MARK: - What docknfv left in the kernel and on disk

/// The kernel and state-directory oracles: `nft`, `iptables-legacy-save`, `ipset`, `ip rule`,
/// `ip route`, and the record files.
enum Leftovers {
    /// `nft list tables` lines naming a docknfv table ("table ip docknfv-cni-…").
    static func nftTables(_ netns: String) throws -> [String] {
        try mustInNetns(netns, ["nft", "list", "tables"]).split(separator: "\n").map(String.init).filter { $0.contains("docknfv") }
    }

    /// Lines of `iptables-legacy-save` / `ip6tables-legacy-save` that are docknfv's: its chains
    /// (`DNFV-*`, `DN<hash>-*`) and its jumps (commented `docknfv …`).
    static func xtables(_ netns: String) throws -> [String] {
        var out: [String] = []
        for tool in ["iptables-legacy-save", "ip6tables-legacy-save"] {
            out += try mustInNetns(netns, [tool]).split(separator: "\n").map(String.init).filter { line in
                line.contains("docknfv") || line.range(of: #"(^:|-[AjN] )(DNFV-|DN[0-9a-f]{8}-)"#, options: .regularExpression) != nil
            }
        }
        return out
    }

    /// The ipsets of the namespace (docknfv's x_tables backend names them d<key>a<n>).
    static func ipsets(_ netns: String) throws -> [String] {
        try mustInNetns(netns, ["ipset", "list", "-n"]).split(separator: "\n").map(String.init)
    }

    /// docknfv's policy rules (protocol 78), both families.
    static func ipRules(_ netns: String) throws -> [String] {
        try ["-4", "-6"].flatMap { family in
            try mustInNetns(netns, ["ip", family, "rule", "show"]).split(separator: "\n").map(String.init).filter { $0.contains("proto 78") }
        }
    }

    /// docknfv's routes (protocol 78) in every table, both families.
    static func routes(_ netns: String) throws -> [String] {
        try ["-4", "-6"].flatMap { family in
            try mustInNetns(netns, ["ip", family, "route", "show", "table", "all", "proto", "78"]).split(separator: "\n").map(String.init)
        }
    }

    /// The attachment records under `stateDir` (`cni/<network>/<key>.json`).
    static func records(_ stateDir: String) -> [Record] {
        let root = stateDir + "/cni"
        let networks = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return networks.flatMap { network -> [Record] in
            let files = (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + network)) ?? []
            return files.filter { $0.hasSuffix(".json") }.sorted().compactMap { Record(path: "\(root)/\(network)/\($0)") }
        }
    }

    /// Every docknfv object a host namespace and the container namespaces still hold, and every
    /// record, as lines to show when something is left (empty: nothing).
    static func all(host: String, containers: [String], stateDir: String) throws -> [String] {
        var out = try nftTables(host).map { "host nft: \($0)" } + xtables(host).map { "host x_tables: \($0)" }
        out += try ipsets(host).map { "host ipset: \($0)" }
        for netns in containers {
            out += try ipRules(netns).map { "\(netns) rule: \($0)" } + routes(netns).map { "\(netns) route: \($0)" }
            out += try nftTables(netns).map { "\(netns) nft: \($0)" }
        }
        out += records(stateDir).map { "record: \($0.network)/\($0.containerID)/\($0.ifname)" }
        return out
    }
}

/// What the tests read from one attachment record.
struct Record: Sendable {
    var network = "", containerID = "", ifname = ""
    /// The rule engine's owner, "cni-<key>"; docknfv's nftables table is "docknfv-" + owner.
    var owner = ""
    var addresses: [String] = []
    var path: String
    var nftTableName: String { "docknfv-" + owner }

    init?(path: String) {
        guard let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        self.path = path
        network = json["network"] as? String ?? ""
        containerID = json["containerID"] as? String ?? ""
        ifname = json["ifname"] as? String ?? ""
        owner = json["owner"] as? String ?? ""
        addresses = (json["addresses"] as? [String] ?? []).compactMap { $0.split(separator: "/").first.map(String.init) }
    }
}

// MARK: - Traffic

enum Traffic {
    /// One ping from `netns`; the TTL of the reply, nil when none came back.
    static func pingTTL(from netns: String, to address: String, ttl: Int? = nil) throws -> (reply: Int?, output: String) {
        let result = try inNetns(netns, ["ping", "-n", "-c", "1", "-W", "2"] + (ttl.map { ["-t", "\($0)"] } ?? []) + [address])
        let reply = result.stdout.range(of: #"ttl=(\d+)"#, options: .regularExpression).flatMap { Int(result.stdout[$0].dropFirst(4)) }
        return (result.succeeded ? reply : nil, result.stdout + result.stderr)
    }
}

/// Persistent echo servers (`busybox nc -ll -e cat`, every address) in network namespaces,
/// stopped by `stop()`.
final class EchoServers {
    private var children: [ChildProcess] = []

    /// Starts a server on `port` in `netns` and waits until it answers from there.
    func start(in netns: String, port: UInt16) throws {
        let child = try ChildProcess.spawn(["nsenter", "--net=\(netns)", "busybox", "nc", "-ll", "-p", "\(port)", "-e", "/bin/cat"])
        children.append(child)
        let listening = try waitUntil(timeout: 5, interval: 0.02) {
            try mustInNetns(netns, ["ss", "-Hltn", "sport", "= :\(port)"]).contains(":\(port)")
        }
        if !listening { throw TestFailure("echo server on port \(port) in \(netns) did not start") }
    }

    func stop() {
        for child in children { child.signal(SIGKILL); child.wait() }
        children = []
    }
}

/// TCP echo from a namespace path (TCPProbe works on `TestNamespace`s).
func tcpEcho(from netns: String, to address: String, port: UInt16) throws -> Bool {
    let result = try inNetns(netns, ["busybox", "timeout", "3", "busybox", "nc", "-w", "2", address, "\(port)"], input: "docknfv-probe\n")
    return result.stdout.contains("docknfv-probe")
}

// MARK: - libcni driver

/// Tests/CNIEndToEndTests/cnidriver.go built with Debian's Go and libcni, once per test process,
/// into a scratch directory removed when the process exits.
enum CNIDriver {
    static var source: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("cnidriver.go").path }

    /// `@unchecked Sendable`: `path` and `failure` are only touched with `lock` held.
    private final class Build: @unchecked Sendable {
        let lock = NSLock()
        var path: String?
        var failure: String?
    }
    private static let build = Build()

    static func path() throws -> String {
        try build.lock.withLock {
            if let path = build.path { return path }
            if let failure = build.failure { throw TestFailure(failure) }
            do {
                build.path = try compile()
                return build.path!
            } catch {
                build.failure = "\(error)"
                throw error
            }
        }
    }

    private static func compile() throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/go"),
              FileManager.default.fileExists(atPath: "/usr/share/gocode/src/github.com/containernetworking/cni/libcni/api.go") else {
            throw TestFailure("Go or libcni is missing: install golang-go and golang-github-appc-cni-dev (scripts/lib/common.sh PEER_PACKAGES)")
        }
        let dir = NSTemporaryDirectory() + "\(TestNamespace.prefix)-cnidriver-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/gocache", withIntermediateDirectories: true)
        driverDir = strdup(dir)
        atexit { if let dir = driverDir { _ = try? FileManager.default.removeItem(atPath: String(cString: dir)) } }
        let result = try runCommand(["/usr/bin/go", "build", "-o", dir + "/cnidriver", source], environment: environment(adding: [
            "GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOFLAGS": "", "GOCACHE": dir + "/gocache", "HOME": dir,
        ]))
        try? FileManager.default.removeItem(atPath: dir + "/gocache")
        guard result.succeeded else { throw TestFailure("go build cnidriver.go: \(result)") }
        return dir + "/cnidriver"
    }
}

/// For the exit handler, which cannot capture (written once, under CNIDriver's lock).
nonisolated(unsafe) private var driverDir: UnsafeMutablePointer<CChar>?

/// One network list driven through libcni from a host namespace, as a runtime would.
struct LibCNIRuntime {
    let host: TestNamespace
    let conflist: String
    let plugins: PluginDir
    let cacheDir: String

    @discardableResult
    func run(_ command: String, id: String, netns: String, ifname: String = "eth0", capabilities: String = "") throws -> CommandResult {
        try inNetns(host.path, ["timeout", "60", try CNIDriver.path(), command, conflist, id, netns, ifname, capabilities],
                    environment: environment(adding: ["CNI_PATH": plugins.cniPath, "CNI_CACHE_DIR": cacheDir]))
    }

    /// Starts the driver without waiting (for parallel runs); output goes to `log`.
    func spawn(_ command: String, id: String, netns: String, ifname: String = "eth0", capabilities: String = "", log: String) throws -> ChildProcess {
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw TestFailure("open \(log): errno \(errno)") }
        defer { close(fd) }
        return try ChildProcess.spawn(["nsenter", "--net=\(host.path)", "timeout", "60", try CNIDriver.path(), command, conflist, id, netns, ifname, capabilities],
                                      environment: environment(adding: ["CNI_PATH": plugins.cniPath, "CNI_CACHE_DIR": cacheDir]),
                                      stdout: fd, stderr: fd)
    }

    @discardableResult
    func must(_ command: String, id: String, netns: String, ifname: String = "eth0", capabilities: String = "") throws -> String {
        let result = try run(command, id: id, netns: netns, ifname: ifname, capabilities: capabilities)
        guard result.succeeded else { throw TestFailure("libcni \(command) \(id)/\(ifname): \(result)") }
        return result.stdout
    }

    /// libcni's cached results left for this list (ADD writes one, DEL removes it).
    var cachedResults: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: cacheDir + "/results")) ?? []).sorted()
    }
}

/// Deletes the first rule of docknfv's host rules whose text contains `text`, by hand, as an
/// operator or another tool might: with `nft delete rule … handle N` in a docknfv-cni-* table, or
/// `iptables-legacy -D` of the line `iptables-legacy-save` shows.
func deleteDocknfvRule(in netns: String, containing text: String) throws {
    for line in try Leftovers.nftTables(netns) {
        let words = line.split(separator: " ").map(String.init)
        let listing = try mustInNetns(netns, ["nft", "-a", "list", "table", words[1], words[2]])
        guard let rule = listing.split(separator: "\n").first(where: { $0.contains(text) && $0.contains("# handle") }),
              let handle = rule.split(separator: " ").last else { continue }
        var chain = ""
        for candidate in listing.split(separator: "\n") {
            if candidate.trimmingCharacters(in: .whitespaces).hasPrefix("chain ") { chain = String(candidate.split(separator: " ")[1]) }
            if candidate == rule { break }
        }
        try mustInNetns(netns, ["nft", "delete", "rule", words[1], words[2], chain, "handle", String(handle)])
        return
    }
    for (save, tool) in [("iptables-legacy-save", "iptables-legacy"), ("ip6tables-legacy-save", "ip6tables-legacy")] {
        var table = "filter"
        for line in try mustInNetns(netns, [save]).split(separator: "\n") {
            if line.hasPrefix("*") { table = String(line.dropFirst()) }
            guard line.hasPrefix("-A "), line.contains(text) else { continue }
            try mustInNetns(netns, [tool, "-w", "-t", table, "-D"] + line.dropFirst(3).split(separator: " ").map(String.init))
            return
        }
    }
    throw TestFailure("no docknfv rule containing \(text) in \(netns)")
}
