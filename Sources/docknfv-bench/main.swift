// docknfv-bench: micro-benchmarks driven by scripts/bench-*. Not installed on VNFs.
//
//   docknfv-bench dualhome NETNS_PATH ITERATIONS LEFT_GWS RIGHT_GWS
//     ITERATIONS times inside the namespace: open a libnl socket, observe the interfaces, plan and
//     apply the whole dual-home plan (timed), then remove it again (timed separately).
//   docknfv-bench sets NETNS_PATH COUNT ITERATIONS
//     ITERATIONS times: create a hash:net set and add COUNT networks over libmnl (timed), destroy it.
//   docknfv-bench rules NETNS_PATH COUNT ITERATIONS
//     ITERATIONS times: apply COUNT filter rules in docknfv's FORWARD chain as one operation
//     (entries built, one libiptc commit; timed), then remove them (timed separately).
//   docknfv-bench nftables NETNS_PATH COUNT ITERATIONS
//     In process, nftables backend: one batch of COUNT rules into an empty table (timed, then
//     removed); then with COUNT rules and a COUNT-element set present, one rule appended and one
//     set element added, each as one change (timed; the kernel mark of the previous change is
//     passed, as docknfvctl does).
//   docknfv-bench import NETNS_PATH COUNT ITERATIONS
//     The phases of `docknfvctl import` of COUNT rules into an empty state and namespace, timed
//     one by one, for each backend: read the save file, merge it into the desired state, build
//     the ruleset and validate it, apply it, save the state.
//   docknfv-bench agent NETNS_PATH COUNT ITERATIONS
//     The policy agent's work: COUNT policies decoded, planned and committed; one changed; none changed.
// Prints one line per measure: `name median_us p90_us`.
import DualHome
import Policy
import NFTables
import IPSet
import IPTables
import RuleEngine
import RuleState
import StateFiles
import Foundation
import NetNS
import Routing
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("docknfv-bench: \(message)\n".utf8))
    exit(2)
}

func microseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
}

func report(_ name: String, _ samples: [Double]) {
    let sorted = samples.sorted()
    let median = sorted[sorted.count / 2]
    let p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
    print("\(name) \(String(format: "%.1f", median)) \(String(format: "%.1f", p90))")
}

func gateways(_ text: String) -> [IPAddress] {
    text.split(separator: ",").map { part in
        guard let address = IPAddress(String(part)) else { fail("bad gateway \(part)") }
        return address
    }
}

let args = CommandLine.arguments
if args.count == 5, args[1] == "agent", let count = Int(args[3]), let iterations = Int(args[4]), count > 0, iterations > 0 {
    benchAgent(netns: args[2], count: count, iterations: iterations)
}
if args.count == 5, args[1] == "sets", let count = Int(args[3]), let iterations = Int(args[4]), count > 0, iterations > 0 {
    benchSets(netns: args[2], count: count, iterations: iterations)
}
if args.count == 5, args[1] == "nftables", let count = Int(args[3]), let iterations = Int(args[4]), count > 0, iterations > 0 {
    benchNFTables(netns: args[2], count: count, iterations: iterations)
}
if args.count == 5, args[1] == "import", let count = Int(args[3]), let iterations = Int(args[4]), count > 0, iterations > 0 {
    benchImport(netns: args[2], count: count, iterations: iterations)
}
if args.count == 5, args[1] == "rules", let count = Int(args[3]), let iterations = Int(args[4]), count > 0, iterations > 0 {
    benchRules(netns: args[2], count: count, iterations: iterations)
    exit(0)
}
guard args.count == 6, args[1] == "dualhome", let iterations = Int(args[3]), iterations > 0 else {
    fail("usage: docknfv-bench dualhome NETNS_PATH ITERATIONS LEFT_GWS RIGHT_GWS | rules|sets|nftables|agent NETNS_PATH COUNT ITERATIONS")
}
var config = DualHomeConfig()
config.left.gateways = gateways(args[4])
config.right.gateways = gateways(args[5])

do {
    let clock = ContinuousClock()
    let (applied, removed, objects) = try NetworkNamespace.run(path: args[2]) { () throws -> ([Double], [Double], Int) in
        var applyTimes: [Double] = [], removeTimes: [Double] = []
        var objects = 0
        for _ in 0..<iterations {
            let start = clock.now
            let engine = DualHomeEngine(try LibNLRouting())
            let plan = try engine.plan(config)
            let changes = try engine.apply(plan)
            applyTimes.append(microseconds(clock.now - start))
            objects = plan.routes.count + plan.rules.count
            guard changes.count >= objects else { fail("apply changed \(changes.count) objects, expected \(objects)") }
            let removeStart = clock.now
            _ = try engine.remove(config)
            removeTimes.append(microseconds(clock.now - removeStart))
            // Reset the sysctls so every iteration applies the full plan.
            for setting in plan.sysctls { try engine.backend.writeSysctl(setting.key, value: "0") }
        }
        return (applyTimes, removeTimes, objects)
    }
    print("objects \(objects) \(objects)")
    report("apply", applied)
    report("remove", removed)
} catch {
    fail("\(error)")
}

func benchRules(netns: String, count: Int, iterations: Int) -> Never {
    let clock = ContinuousClock()
    let parseStart = clock.now
    let rules = (0..<count).map { i in
        "-s 10.\(i / 65536 % 256).\(i / 256 % 256).\(i % 256)/32 -p tcp --dport \(1000 + i % 60000) -j ACCEPT"
    }.flatMap { try! RuleParser(family: .v4).parse($0) }
    let parseTime = microseconds(clock.now - parseStart)
    let desired = TableRules(family: .v4, table: .filter, chains: ["FORWARD": rules])
    do {
        let (applied, removed) = try NetworkNamespace.run(path: netns) { () throws -> ([Double], [Double]) in
            var applyTimes: [Double] = [], removeTimes: [Double] = []
            for _ in 0..<iterations {
                let start = clock.now
                guard try TableEngine().apply(desired) else { fail("nothing was committed") }
                applyTimes.append(microseconds(clock.now - start))
                let removeStart = clock.now
                try TableEngine().remove(family: .v4, table: .filter)
                removeTimes.append(microseconds(clock.now - removeStart))
            }
            return (applyTimes, removeTimes)
        }
        print("parse \(String(format: "%.1f", parseTime)) \(String(format: "%.1f", parseTime))")
        report("apply", applied)
        report("remove", removed)
    } catch {
        fail("\(error)")
    }
    exit(0)
}

func benchSets(netns: String, count: Int, iterations: Int) -> Never {
    let clock = ContinuousClock()
    let entries = (0..<count).map { i in
        SetEntry(address: IPAddress(family: .v4, bytes: [10, UInt8(i / 256 % 256), UInt8(i % 256), 0])!, prefixLength: 24)
    }
    do {
        let times = try NetworkNamespace.run(path: netns) { () throws -> [Double] in
            var samples: [Double] = []
            for _ in 0..<iterations {
                let start = clock.now
                try IPSet.create("dnfv-bench", type: .hashNet, family: .v4)
                try IPSet.add("dnfv-bench", family: .v4, entries)
                samples.append(microseconds(clock.now - start))
                guard try IPSet.list("dnfv-bench").entries.count == count else { fail("set holds the wrong number of elements") }
                try IPSet.destroy("dnfv-bench")
            }
            return samples
        }
        report("sets", times)
    } catch {
        fail("\(error)")
    }
    exit(0)
}

func benchNFTables(netns: String, count: Int, iterations: Int) -> Never {
    let clock = ContinuousClock()
    let rules = (0..<count).map { i in
        "-s 10.\(i / 65536 % 256).\(i / 256 % 256).\(i % 256)/32 -p tcp --dport \(1000 + i % 60000) -j ACCEPT"
    }.flatMap { try! RuleParser(family: .v4).parse($0) }
    let elements: [SetEntry] = (0..<count).map { (i: Int) -> SetEntry in
        let bytes: [UInt8] = [10, UInt8(i / 65536 % 256), UInt8(i / 256 % 256), UInt8(i % 256)]
        return SetEntry(address: IPAddress(family: .v4, bytes: bytes)!)
    }
    let backend = NFTablesBackend()
    let full = Ruleset(tables: [TableRules(family: .v4, table: .filter, chains: ["FORWARD": rules])])
    do {
        let (batch, rule, element) = try NetworkNamespace.run(path: netns) { () throws -> ([Double], [Double], [Double]) in
            var batchTimes: [Double] = [], ruleTimes: [Double] = [], elementTimes: [Double] = []
            for _ in 0..<iterations {
                let start = clock.now
                _ = try backend.apply(full, previous: Ruleset())
                batchTimes.append(microseconds(clock.now - start))
                _ = try backend.remove(full)
            }
            var current = full
            current.sets = ["bench": SetSpec(type: .hashIP, family: .v4, entries: elements)]
            current.kernelMark = try backend.apply(current, previous: Ruleset()).kernelMark
            for i in 0..<iterations {
                var next = current
                next.tables[0].entries["FORWARD"]!.append(RuleEntry(try RuleParser(family: .v4).parse("-p udp --dport \(i + 1) -j ACCEPT")[0]))
                var start = clock.now
                var report = try backend.apply(next, previous: current)
                ruleTimes.append(microseconds(clock.now - start))
                next.kernelMark = report.kernelMark
                current = next
                next.sets["bench"]!.entries.append(SetEntry(address: IPAddress(family: .v4, bytes: [192, 0, 2, UInt8(i % 250)])!))
                start = clock.now
                report = try backend.apply(next, previous: current)
                elementTimes.append(microseconds(clock.now - start))
                next.kernelMark = report.kernelMark
                current = next
            }
            _ = try backend.remove(current)
            return (batchTimes, ruleTimes, elementTimes)
        }
        report("batch", batch)
        report("rule", rule)
        report("element", element)
    } catch {
        fail("\(error)")
    }
    exit(0)
}

/// The policy agent's work, in process: a poll answer with COUNT policies (destinations × sources)
/// decoded, planned and committed into an empty namespace; then one changed policy; then a poll
/// that changes nothing (which must commit nothing).
func benchAgent(netns: String, count: Int, iterations: Int) -> Never {
    let clock = ContinuousClock()
    let destinations = 100, sources = max(1, count / destinations)
    /// `count` policies: every source group may reach every destination group on port 8000;
    /// `extra` adds one more for destination 0 (a new source tag), `moved` gives one a new port.
    func policies(extra: Bool = false, moved: Int = -1) -> [Policy] {
        var out: [Policy] = []
        for d in 0..<destinations {
            for s in 0..<sources {
                let port = UInt16(8000 + (d * sources + s == moved ? 1 : 0))
                out.append(Policy(sourceID: "src\(s)", sourceTag: UInt32(s + 1), destinationID: "dst\(d)", destinationTag: UInt32(1000 + d), proto: .tcp, ports: port...port))
            }
        }
        if extra { out.append(Policy(sourceID: "new", sourceTag: 0xfff0, destinationID: "dst0", destinationTag: 1000, proto: .tcp, ports: 8000...8000)) }
        return out
    }
    let containers = (0..<destinations).map { LocalContainer(address: IPAddress("10.244.\($0 / 250).\($0 % 250 + 2)")!, groupID: "dst\($0)") }
    let overlay = IPPrefix("10.244.0.0/16")!
    // Poll answers as the server sends them: each sample decodes, plans and commits from bytes.
    let base = PolicyDocument.encode(policies()), added = PolicyDocument.encode(policies(extra: true))
    let backend = NFTablesBackend(session: NFTablesSession()) // as the agent has it
    var samples: [String: [Double]] = [:]
    var wrote = false
    do {
        try NetworkNamespace.run(path: netns) { () throws in
            for i in 0..<iterations {
                let moved = PolicyDocument.encode(policies(moved: i))
                var current = Ruleset(owner: EnforcementPlanner.owner)
                // As the agent does: answers read against the last one, plans from the last plan.
                let decoder = PolicyDecoder(), planner = IncrementalPlanner()
                func step(_ name: String, _ answer: [UInt8]) throws -> ApplyReport {
                    let start = clock.now
                    var next = try planner.plan(try decoder.decode(answer), containers: containers, overlay: overlay, style: .sets)
                    let report = try backend.apply(next, previous: current)
                    next.kernelMark = report.kernelMark
                    samples[name, default: []].append(microseconds(clock.now - start))
                    current = next
                    return report
                }
                _ = try step("agent_converge_\(count)_policies", base)
                _ = try step("agent_one_policy_added", added)
                _ = try step("agent_one_policy_removed", base)
                _ = try step("agent_one_policy_port_changed", moved)
                wrote = try step("agent_nothing_changed", moved).changedAnything || wrote
                _ = try backend.remove(current)
                // Where a poll's time goes: decoding the answer, planning the ruleset.
                var start = clock.now
                let decoded = try PolicyDocument.decode(base)
                samples["agent_decode_only", default: []].append(microseconds(clock.now - start))
                start = clock.now
                _ = try EnforcementPlanner.plan(decoded, containers: containers, overlay: overlay, style: .sets)
                samples["agent_plan_only", default: []].append(microseconds(clock.now - start))
            }
        }
    } catch { fail("\(error)") }
    for name in ["agent_converge_\(count)_policies", "agent_one_policy_added", "agent_one_policy_removed", "agent_one_policy_port_changed", "agent_nothing_changed",
                 "agent_decode_only", "agent_plan_only"] {
        report(name, samples[name]!)
    }
    print("agent_nothing_changed_wrote_kernel \(wrote ? 1 : 0)")
    exit(0)
}

func benchImport(netns: String, count: Int, iterations: Int) -> Never {
    let clock = ContinuousClock()
    let text = "*filter\n" + (0..<count).map { i in
        "-A FORWARD -s 10.\(i / 65536 % 256).\(i / 256 % 256).\(i % 256)/32 -p tcp -m tcp --dport \(1000 + i % 60000) -j ACCEPT\n"
    }.joined() + "COMMIT\n"
    let phases = ["read", "merge", "validate", "apply", "save"]
    do {
        for kind in [BackendKind.nftables, .iptables] {
            var times: [String: [Double]] = [:]
            try NetworkNamespace.run(path: netns) {
                for _ in 0..<iterations {
                    let directory = "/tmp/docknfv-bench-import-\(getpid())"
                    let store = StateStore(directory: directory)
                    var start = clock.now
                    func lap(_ phase: String) { let now = clock.now; times[phase, default: []].append(microseconds(now - start)); start = now }
                    let save = try SaveFileReader.read(text, family: .v4)
                    lap("read")
                    var state = DesiredState()
                    _ = try state.merge(save, family: .v4)
                    lap("merge")
                    let backend = BackendSelector.backend(kind)
                    let desired = state.ruleset()
                    try backend.validate(desired)
                    lap("validate")
                    let report = try backend.apply(desired, previous: Ruleset())
                    lap("apply")
                    state.backend = kind
                    state.kernelMark = report.kernelMark
                    try store.save(state)
                    lap("save")
                    _ = try backend.remove(desired)
                    _ = rmTree(directory)
                }
            }
            for phase in phases { report("import-\(kind.rawValue)-\(phase)", times[phase] ?? []) }
        }
    } catch {
        fail("\(error)")
    }
    exit(0)
}

/// Removes the benchmark's state directory (a few files, no subdirectories).
func rmTree(_ path: String) -> Bool {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return false }
    for name in names { unlink(path + "/" + name) }
    return rmdir(path) == 0
}
