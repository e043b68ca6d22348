import CNIPlugin
import NetTypes
import NFTables
import Policy
import PolicyClient
import RuleEngine
import RuleState
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

/// The policy agent: polls the Policy Server, keeps the last good policy set on disk, and makes
/// the kernel hold the rules they mean for this node's containers (from the CNI plugin's records),
/// through the rule engine (owner `agent`: only what changed is committed, nothing when nothing did).
public final class Agent: @unchecked Sendable { // state touched by the poll loop; counters read by the metrics listener under `lock`
    public let config: AgentConfig
    let client: PolicyClient
    let backend: any RuleBackend
    public let log: Log
    private var lock = pthread_mutex_t()
    private var previous: Ruleset
    /// Plans each poll from the last, rebuilding only destinations whose policies changed.
    private let planner = IncrementalPlanner()
    private(set) var policies: [Policy]?
    private var metrics = Metrics()
    private var forced = false

    public struct Metrics: Sendable {
        public var polls = 0
        public var failures = 0
        public var lastSuccess: Double = 0
        public var lastPollSeconds: Double = 0
        public var policyCount = 0
        public var commits = 0
        public var enforcing = false
    }

    public init(config: AgentConfig, log: Log = Log()) throws {
        self.config = config
        self.log = log
        try config.checkTLSFiles()
        client = try PolicyClient(url: config.policyServerURL, files: .init(caCert: config.caCertFile, clientCert: config.clientCertFile, clientKey: config.clientKeyFile))
        let kind = try BackendSelector().select(config.backend, recorded: nil, stateHasRules: false).kind
        // The agent commits at every change of policy: its nftables socket stays open.
        backend = BackendSelector.backend(kind, session: NFTablesSession())
        previous = Ruleset(owner: EnforcementPlanner.owner)
        pthread_mutex_init(&lock, nil)
    }

    var statePath: String { config.stateDir + "/agent/policies.json" }

    public var snapshot: Metrics { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return metrics }

    func update(_ body: (inout Metrics) -> Void) { pthread_mutex_lock(&lock); body(&metrics); pthread_mutex_unlock(&lock) }

    /// Asks the loop to poll now (SIGUSR1, or POST /force-poll on the metrics listener).
    public func forcePoll() { pthread_mutex_lock(&lock); forced = true; pthread_mutex_unlock(&lock) }

    func takeForced() -> Bool { pthread_mutex_lock(&lock); defer { forced = false; pthread_mutex_unlock(&lock) }; return forced }

    /// The containers of this node that the overlay reaches.
    public func registry() -> [LocalContainer] { AttachmentStore(stateDir: config.stateDir).localContainers() }

    /// The last good policy set from disk (enforced at start, before the first poll answers).
    public func loadLastGood() {
        guard let bytes = try? AtomicFile.read(statePath) else { return }
        do { policies = try PolicyDocument.decode(bytes) } catch {
            log.error("last good policy state unreadable; kept aside", ["path": statePath, "error": "\(error)"])
            rename(statePath, statePath + ".unreadable")
        }
    }

    func saveLastGood(_ policies: [Policy]) {
        do {
            try StateDirectory.prepare(config.stateDir + "/agent")
            try AtomicFile.write(statePath, contents: PolicyDocument.encode(policies), mode: 0o600)
        } catch { log.error("cannot save the policy state", ["error": "\(error)"]) }
    }

    /// What the CNI plugin needs to apply the known policies to a new container at its ADD.
    func saveEnforcement() {
        let settings = AgentEnforcement(overlay: config.overlayNetwork, deny: config.denyAction, backend: backend.kind)
        do {
            try StateDirectory.prepare(config.stateDir + "/agent")
            try AtomicFile.write(config.stateDir + "/agent/" + AgentEnforcement.fileName, contents: settings.json().compact(), mode: 0o600)
        } catch { log.error("cannot save the enforcement settings", ["error": "\(error)"]) }
    }

    /// Makes the kernel hold what `policies` mean for the current containers.
    @discardableResult
    public func enforce(_ policies: [Policy]) throws -> ApplyReport {
        let desired = try planner.plan(policies, containers: registry(), overlay: config.overlayNetwork, deny: config.denyAction,
                                       style: .for(backend.kind))
        var report = try backend.apply(desired, previous: previous)
        previous = desired
        previous.kernelMark = report.kernelMark
        if report.changedAnything { update { $0.commits += 1 } }
        update { $0.enforcing = true; $0.policyCount = policies.count }
        report.kernelMark = previous.kernelMark
        return report
    }

    /// One poll: fetch, and on success persist and enforce; on failure keep (open) or reject all (closed).
    public func pollOnce() async {
        let start = ContinuousClock.now
        let groups = Array(Set(registry().compactMap(\.groupID))).sorted()
        do {
            let fetched = try await client.fetchRetrying(groupIDs: groups, attempts: 2, delay: 0.2)
            let seconds = Self.seconds(ContinuousClock.now - start)
            if fetched != policies {
                saveLastGood(fetched)
                log.info("policies changed", ["count": "\(fetched.count)"])
            }
            policies = fetched
            let report = try enforce(fetched)
            update { $0.polls += 1; $0.lastSuccess = Self.now(); $0.lastPollSeconds = seconds }
            if report.changedAnything { log.info("rules committed", ["tables": report.committed.map(\.description).joined(separator: ",")]) }
        } catch {
            update { $0.polls += 1; $0.failures += 1; $0.lastPollSeconds = Self.seconds(ContinuousClock.now - start) }
            log.error("poll failed; the last good rules stay in force", ["error": "\(error)", "failMode": config.failMode.rawValue])
            if config.failMode == .closed {
                do { try enforce([]) } catch { log.error("cannot enforce fail-closed", ["error": "\(error)"]) }
            }
        }
    }

    /// Enforces the last good state, then polls every interval (or when forced) until `stop` says so.
    public func run(stop: @escaping @Sendable () -> Bool) async {
        saveEnforcement()
        loadLastGood()
        if let policies {
            do { try enforce(policies); log.info("enforcing the last good policies", ["count": "\(policies.count)"]) } catch {
                log.error("cannot enforce the last good policies", ["error": "\(error)"])
            }
        }
        while !stop() {
            await pollOnce()
            let deadline = ContinuousClock.now + .milliseconds(Int64(config.pollIntervalSeconds * 1000))
            while !stop(), ContinuousClock.now < deadline, !takeForced() {
                try? await Task.sleep(nanoseconds: 50_000_000)
            }
        }
        log.info("stopping; the rules stay in force", [:])
    }

    static func now() -> Double { var ts = timespec(); clock_gettime(CLOCK_REALTIME, &ts); return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 }
    static func seconds(_ duration: Duration) -> Double { Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18 }

    /// Prometheus text.
    public func metricsText() -> String {
        let m = snapshot
        return """
        # HELP docknfv_agent_polls_total Polls of the policy server.
        # TYPE docknfv_agent_polls_total counter
        docknfv_agent_polls_total \(m.polls)
        # HELP docknfv_agent_poll_failures_total Polls rejected (unreachable, TLS, HTTP or content errors).
        # TYPE docknfv_agent_poll_failures_total counter
        docknfv_agent_poll_failures_total \(m.failures)
        # HELP docknfv_agent_poll_duration_seconds Duration of the last poll.
        # TYPE docknfv_agent_poll_duration_seconds gauge
        docknfv_agent_poll_duration_seconds \(m.lastPollSeconds)
        # HELP docknfv_agent_last_success_timestamp_seconds When a poll last succeeded.
        # TYPE docknfv_agent_last_success_timestamp_seconds gauge
        docknfv_agent_last_success_timestamp_seconds \(m.lastSuccess)
        # HELP docknfv_agent_policies Policies in force.
        # TYPE docknfv_agent_policies gauge
        docknfv_agent_policies \(m.policyCount)
        # HELP docknfv_agent_commits_total Changes committed to the kernel.
        # TYPE docknfv_agent_commits_total counter
        docknfv_agent_commits_total \(m.commits)

        """
    }
}

/// Structured logs: one JSON object per line on stderr.
public struct Log: Sendable {
    public init() {}
    public func info(_ message: String, _ fields: [String: String]) { write("info", message, fields) }
    public func error(_ message: String, _ fields: [String: String]) { write("error", message, fields) }

    func write(_ level: String, _ message: String, _ fields: [String: String]) {
        var members: [(String, JSON)] = [("ts", .string(String(format3: Agent.now()))), ("level", .string(level)), ("msg", .string(message))]
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { members.append((key, .string(value))) }
        var line = JSON.object(members).compact()
        line.append(0x0a)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

extension String {
    init(format3 value: Double) {
        let millis = Int((value * 1000).rounded())
        self = "\(millis / 1000).\(String(repeating: "0", count: 3 - String(millis % 1000).count))\(millis % 1000)"
    }
}
