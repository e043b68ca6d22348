import Foundation
import Testing
import TestSupport

/// Foreign rule writers looping in a namespace while docknfv works there: `nft` on a table of its
/// own, `iptables` (the nf_tables variant) and `iptables-legacy` on INPUT. Each keeps a sentinel
/// rule and adds and deletes another one in a loop, counting rounds and failures in files.
final class ForeignWriters {
    let netns: String
    let dir: String
    private var children: [ChildProcess] = []
    static let names = ["nft", "iptables", "iptables-legacy"]

    init(netns: String, dir: String) throws {
        self.netns = netns
        self.dir = dir
        try mustInNetns(netns, ["nft", "add table inet dnfvtforeign; add chain inet dnfvtforeign c; add rule inet dnfvtforeign c counter comment \"sentinel\""])
        for tool in ["iptables", "iptables-legacy"] {
            try mustInNetns(netns, [tool, "-w", "-A", "INPUT", "-s", "198.51.100.1", "-m", "comment", "--comment", "dnfvt-sentinel", "-j", "DROP"])
        }
    }

    func start() throws {
        let nft = """
            n=0; while [ ! -e "$1/stop" ]; do
              out=$(nft -e -a add rule inet dnfvtforeign c ip saddr 192.0.2.1 counter comment '"churn"' 2>&1) || { echo "add: $out" >> "$1/nft.failed"; continue; }
              nft delete rule inet dnfvtforeign c handle "${out##*handle }" || echo "delete: $out" >> "$1/nft.failed"
              n=$((n+1)); echo $n > "$1/nft.next"; mv "$1/nft.next" "$1/nft.rounds"; sleep 0.01
            done
            """
        let iptables = """
            n=0; while [ ! -e "$1/stop" ]; do
              out=$("$2" -w -A INPUT -s 192.0.2.2 -m comment --comment churn -j ACCEPT 2>&1) || echo "add: $out" >> "$1/$2.failed"
              out=$("$2" -w -D INPUT -s 192.0.2.2 -m comment --comment churn -j ACCEPT 2>&1) || echo "delete: $out" >> "$1/$2.failed"
              n=$((n+1)); echo $n > "$1/$2.next"; mv "$1/$2.next" "$1/$2.rounds"; sleep 0.01
            done
            """
        for (script, tool) in [(nft, "nft"), (iptables, "iptables"), (iptables, "iptables-legacy")] {
            children.append(try ChildProcess.spawn(["nsenter", "--net=\(netns)", "bash", "-c", script, "writer", dir, tool]))
        }
        for name in Self.names {
            if !(waitUntil(timeout: 5) { rounds()[name, default: 0] > 0 }) { throw TestFailure("foreign writer \(name) did not start") }
        }
    }

    /// Rounds each writer has finished so far.
    func rounds() -> [String: Int] {
        Dictionary(uniqueKeysWithValues: Self.names.map { name in
            (name, Int(((try? String(contentsOfFile: "\(dir)/\(name).rounds", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
        })
    }

    /// What the writers reported as failed (empty: nothing).
    func failures() -> [String] {
        Self.names.compactMap { name in
            guard let text = try? String(contentsOfFile: "\(dir)/\(name).failed", encoding: .utf8), !text.isEmpty else { return nil }
            return "\(name): \(text.prefix(500))"
        }
    }

    /// Stops the writers at the end of a round (killed if they do not stop within 10 s).
    func stop() {
        _ = FileManager.default.createFile(atPath: dir + "/stop", contents: nil)
        let deadline = Date().addingTimeInterval(10)
        for child in children {
            while child.poll() == nil && Date() < deadline { usleep(10_000) }
            if child.poll() == nil { child.signal(SIGKILL); child.wait() }
        }
        children = []
    }

    /// The foreign rules as they are now: each tool's sentinel, and no churn rule.
    func intact() throws -> [String] {
        var problems: [String] = []
        let nft = try mustInNetns(netns, ["nft", "list", "chain", "inet", "dnfvtforeign", "c"])
        if !nft.contains("comment \"sentinel\"") || nft.contains("churn") { problems.append("nft: \(nft)") }
        for tool in ["iptables", "iptables-legacy"] {
            let rules = try mustInNetns(netns, [tool, "-w", "-S", "INPUT"])
            if !rules.contains("-s 198.51.100.1/32 -m comment --comment dnfvt-sentinel -j DROP") || rules.contains("churn") { problems.append("\(tool): \(rules)") }
        }
        return problems
    }
}

/// One libcni run per container, all at once.
struct ParallelRuns {
    let cni: LibCNIRuntime
    let containers: [TestNamespace]
    let capabilities: String
    let logs: ScratchDir

    /// Runs `command` for every container at once; the failures' output.
    func all(_ command: String) throws -> [String] {
        var runs: [(Int, ChildProcess)] = []
        for (index, container) in containers.enumerated() {
            runs.append((index, try cni.spawn(command, id: "par-ctr-\(index)", netns: container.path, capabilities: capabilities,
                                              log: logs.file("\(command)-\(index).log"))))
        }
        return runs.compactMap { index, child in
            child.wait() == 0 ? nil : "\(command) par-ctr-\(index): " + ((try? String(contentsOfFile: logs.file("\(command)-\(index).log"), encoding: .utf8)) ?? "")
        }
    }
}

extension CNIEndToEndTests {
    @Suite("twenty parallel attachments beside foreign rule writers") struct Parallel {
        static let capabilities = #"{"netOutRules":[{"protocol":"tcp","networks":[{"start":"10.85.9.0","end":"10.85.9.255"}],"ports":"443, 8443"}]}"#

        /// Each attachment's host rules as the kernel lists them (one listing of the namespace),
        /// by owner, its own names and address replaced by placeholders so that every attachment's
        /// must read the same. nftables: its table; x_tables: the jumps commented with its owner and
        /// the chains they lead to.
        static func hostRules(_ netns: String, records: [Record], backend: String) throws -> [String: String] {
            var out: [String: String] = [:]
            if backend == "nftables" {
                let ruleset = try mustInNetns(netns, ["nft", "list", "ruleset"])
                    .replacingOccurrences(of: #"counter packets \d+ bytes \d+"#, with: "counter", options: .regularExpression)
                var tables: [String: String] = [:], current: String?
                for line in ruleset.split(separator: "\n", omittingEmptySubsequences: false) {
                    if line.hasPrefix("table ") { current = line.split(separator: " ").dropFirst(2).first.map(String.init) }
                    if let current { tables[current, default: ""] += line + "\n" }
                }
                for record in records { out[record.owner] = tables[record.nftTableName]?.trimmingCharacters(in: .whitespacesAndNewlines) }
            } else {
                let lines = try Leftovers.xtables(netns).map { $0.replacingOccurrences(of: #"\[\d+:\d+\]"#, with: "", options: .regularExpression) }
                for record in records {
                    let jumps = lines.filter { $0.contains("docknfv \(record.owner)") }
                    let prefixes = Set(jumps.compactMap { (jump: String) -> String? in
                        guard let range = jump.range(of: #"-j (DNFV-|DN[0-9a-f]{8}-)"#, options: .regularExpression) else { return nil }
                        return String(jump[range].dropFirst(3))
                    })
                    guard !prefixes.isEmpty else { continue }
                    var text = lines.filter { line in jumps.contains(line) || prefixes.contains { line.contains($0) } }.sorted().joined(separator: "\n")
                    for prefix in prefixes { text = text.replacingOccurrences(of: prefix, with: "OWNER-") }
                    out[record.owner] = text
                }
            }
            for record in records {
                guard let address = record.addresses.first else { continue }
                out[record.owner] = out[record.owner]?.replacingOccurrences(of: record.owner, with: "OWNER")
                    .replacingOccurrences(of: Self.addressPattern(address), with: "ADDRESS", options: .regularExpression)
            }
            return out
        }

        /// `address` as a whole address in a rule listing (10.0.0.1 but not 10.0.0.10).
        static func addressPattern(_ address: String) -> String {
            #"(?<![0-9.])\#(NSRegularExpression.escapedPattern(for: address))(?![0-9])"#
        }

        /// Issue 9, tests: twenty ADDs of different containers at once, then twenty DELs, while
        /// foreign `nft`, `iptables` and `iptables-legacy` writers loop in the same namespace:
        /// every attachment has exactly its own rules while present, nothing of docknfv is left
        /// after the DELs, and the foreign rules are intact.
        @Test(arguments: ["nftables", "iptables"])
        func twentyAttachmentsAtOnceBesideForeignWriters(backend: String) throws {
            let scratch = try ScratchDir("parallel")
            defer { scratch.remove() }
            let count = 20
            try withNamespaces(["qhost"] + (0..<count).map { "q\($0)" }) { ns in
                let host = ns[0], containers = Array(ns.dropFirst())
                let stateDir = scratch.file("state")
                let list = try scratch.write("net.conflist", conflist(
                    version: "1.0.0", name: "dnfvt-par", bridge: "cnie2e-b5", subnet: "10.85.0.0/24", ipamDir: scratch.file("ipam"),
                    docknfv: #""side":"left","backend":"\#(backend)","stateDir":"\#(stateDir)","capabilities":{"netOutRules":true}"#))
                let cni = LibCNIRuntime(host: host, conflist: list, plugins: try PluginDir(in: scratch), cacheDir: scratch.file("cache"))
                _ = try CNIDriver.path()
                // The bridge once, so that the twenty ADDs race on docknfv, not on creating it.
                // Its MAC set by hand: a bridge otherwise takes the lowest MAC of its ports, which
                // changes while twenty veths join, and the bridge plugin's CHECK compares it.
                _ = try host.ip("link add cnie2e-b5 address 02:00:00:00:0b:05 type bridge")
                try FileManager.default.createDirectory(atPath: scratch.file("writers"), withIntermediateDirectories: true)
                let writers = try ForeignWriters(netns: host.path, dir: scratch.file("writers"))
                defer { writers.stop() }
                try writers.start()

                let runner = ParallelRuns(cni: cni, containers: containers, capabilities: Self.capabilities, logs: scratch)
                let beforeAdd = writers.rounds()
                let addFailures = try runner.all("add")
                try #require(addFailures.isEmpty, "\(addFailures)")
                let afterAdd = writers.rounds()

                // While present: twenty records, each with its own table (or chains) holding
                // the same rules for its own address, no other's; its iif rule in its namespace;
                // and CHECK (twenty at once, too) agrees.
                let records = Leftovers.records(stateDir)
                #expect(records.count == count)
                let addresses = records.compactMap(\.addresses.first)
                #expect(Set(addresses).count == count, "\(addresses)")
                var shapes: [String: Int] = [:]
                let rules = try Self.hostRules(host.path, records: records, backend: backend)
                for record in records {
                    guard let mine = rules[record.owner] else { Issue.record("no host rules for \(record.owner)"); continue }
                    #expect(mine.contains("ADDRESS"), "\(mine)")
                    let others = addresses.filter { mine.range(of: Self.addressPattern($0), options: .regularExpression) != nil }
                    #expect(others.isEmpty, "\(record.owner) holds rules for \(others)")
                    shapes[mine, default: 0] += 1
                }
                #expect(shapes.count == 1 && shapes.values.first == count, "\(shapes.keys.joined(separator: "\n---\n"))")
                if backend == "nftables" { #expect(try Leftovers.nftTables(host.path).count == count) }
                for container in containers {
                    let rules = try Leftovers.ipRules(container.path)
                    #expect(rules.count == 1 && rules[0].contains("iif eth0 lookup 102"), "\(container.name): \(rules)")
                }
                let checkFailures = try runner.all("check")
                #expect(checkFailures.isEmpty, "\(checkFailures)")

                let beforeDel = writers.rounds()
                let delFailures = try runner.all("del")
                #expect(delFailures.isEmpty, "\(delFailures)")
                let afterDel = writers.rounds()
                writers.stop()

                let leftovers = try Leftovers.all(host: host.path, containers: containers.map(\.path), stateDir: stateDir)
                #expect(leftovers.isEmpty, "\(leftovers)")
                #expect(cni.cachedResults.isEmpty, "\(cni.cachedResults)")
                // The writers ran all along, never failed, and their rules are as they left them.
                for name in ForeignWriters.names {
                    #expect(afterAdd[name]! > beforeAdd[name]! && afterDel[name]! > beforeDel[name]!,
                            "\(name) did not run during the ADDs and DELs: \(beforeAdd) \(afterAdd) \(beforeDel) \(afterDel)")
                }
                #expect(writers.failures().isEmpty, "\(writers.failures())")
                let foreign = try writers.intact()
                #expect(foreign.isEmpty, "\(foreign)")
            }
        }
    }
}
