import CNI
import Conntrack
import NetTypes
import DualHome
import NetNS
import NetlinkRelease
import Policy
import RuleEngine
import RuleState
import Routing
import ShortProcess
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

/// The `docknfv` CNI plugin: one run is one command. Host rules are applied in the runtime's
/// namespace (the calling thread's); everything inside the container on a thread that entered
/// its namespace.
public struct Plugin {
    public var environment: [String: String]
    public var selector = BackendSelector()
    /// How long a run waits for another run's lock before answering "try again later".
    public var lockTimeout: Double = 10
    /// The process exits after this run: netfilter sockets are closed in a detached process
    /// (`NetlinkRelease.together(handingOff:)`), so the runtime does not wait for nf_tables to
    /// free what a DEL removed. Off for in-process callers (tests, the agent).
    public var handOffSockets = false

    public init(environment: [String: String]) { self.environment = environment }

    /// Runs the command the environment names on the config read from stdin. Returns what to
    /// print on stdout and the exit status.
    public func run(stdin: [UInt8]) -> (output: [UInt8], status: Int32) {
        var version = CNIVersion.latest.description
        do throws(CNIError) {
            let request = try CNIRequest(environment: environment)
            if request.command == .version { return (Self.versionReply(stdin), 0) }
            let json: JSON
            // DEL works from the attachment's record and never reads the runtime config (which
            // may hold a thousand ASG rules): it is checked as JSON, not built.
            do { json = try request.command == .del ? JSON.parse(stdin, omittingMembers: ["runtimeConfig"]) : JSON.parse(stdin) } catch {
                throw CNIError(CNIError.decodeFailure, "cannot decode the network configuration", details: "\(error)")
            }
            ShortProcess.keepUntilExit(json) // the parsed config, plan and record: see ShortProcess
            if let text = json["cniVersion"]?.string, CNIVersion(text) != nil { version = text }
            let config = try PluginConfig(json, command: request.command)
            ShortProcess.keepUntilExit(config)
            return try NetlinkRelease.together(handingOff: handOffSockets) { () throws(CNIError) -> (output: [UInt8], status: Int32) in
                switch request.command {
                case .add: return (try add(request, config).compact() + [0x0a], 0)
                case .del: try del(request, config)
                case .check: try check(request, config)
                case .gc: try gc(config)
                case .status: try status(config)
                case .version: break
                }
                return ([], 0)
            }
        } catch {
            return (error.json(cniVersion: version).compact() + [0x0a], 1)
        }
    }

    /// VERSION's answer (runtimes probe it often; it needs neither the environment nor a config).
    public static func versionReply(_ stdin: [UInt8]) -> [UInt8] {
        let asked = (try? JSON.parse(stdin))?["cniVersion"]?.string ?? CNIVersion.latest.description
        return JSON.object([
            ("cniVersion", .string(asked)),
            ("supportedVersions", .array(CNIVersion.supported.map { .string($0.description) })),
        ]).compact() + [0x0a]
    }

    // MARK: ADD

    func add(_ request: CNIRequest, _ config: PluginConfig) throws(CNIError) -> JSON {
        let attachment = Attachment(network: config.name, id: request.attachment!)
        let netns = request.netns!
        let store = AttachmentStore(stateDir: config.stateDir)
        let lock = try store.lock(timeout: lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        let previous = try store.load(attachment)
        let (inputs, containerKind) = try observe(request, config, attachment: attachment, previous: previous)
        let plan = try AttachmentPlanner.plan(config, inputs)
        ShortProcess.keepUntilExit(plan)
        ShortProcess.keepUntilExit(previous as Any)
        let hostKind = try select(config.backend, recorded: previous?.hostBackend, hasRules: !(previous?.host.isEmpty ?? true))

        var record = AttachmentRecord(attachment: attachment)
        record.netns = netns
        record.hostBackend = hostKind
        record.containerBackend = containerKind
        record.addresses = inputs.addresses
        record.policyGroupID = config.policyGroupID
        if let side = config.side {
            record.side = side
            record.sideTable = side == .left ? config.leftTable : config.rightTable
            record.otherTable = side == .left ? config.rightTable : config.leftTable
            record.rulePriority = config.rulePriority
        }
        record.host = plan.host
        record.container = plan.container
        record.portMappings = config.portMappings
        let ports = PortClaims(store: store)
        try ports.claim(config.portMappings, key: attachment.key)
        // The record first: whatever happens next, DEL and GC know what may be there.
        do { try store.save(record) } catch {
            ports.release(key: attachment.key)
            throw error
        }

        let hostBackend = BackendSelector.backend(hostKind)
        let oldHost = previous?.host ?? Ruleset(owner: attachment.owner)
        var hostApplied = false
        do {
            _ = try hostBackend.apply(plan.host, previous: oldHost)
            hostApplied = true
            try inNetns(netns) {
                let routing = try LibNLRouting()
                // A repeated ADD with another side or tables: the old side goes first.
                if let old = previous, old.side != nil, old.side != config.side || old.sideTable != record.sideTable || old.otherTable != record.otherTable {
                    try SideRouting.remove(routing, ifname: attachment.id.ifname, table: old.sideTable, otherTable: old.otherTable)
                }
                let backend = BackendSelector.backend(containerKind)
                let oldContainer = previous?.container ?? Ruleset(owner: attachment.owner)
                _ = try backend.apply(plan.container, previous: oldContainer)
                do {
                    if let dualHome = plan.dualHome { _ = try DualHomeEngine(routing).apply(dualHome) }
                    if let mtu = plan.mtu { _ = try RoutingOperations(routing).ensureLink(attachment.id.ifname, mtu: mtu) }
                } catch {
                    _ = try? backend.apply(oldContainer, previous: plan.container)
                    throw error
                }
            }
            for interface in plan.localnetInterfaces { _ = try RoutingOperations(try LibNLRouting()).ensure(.routeLocalnet(interface), "1") }
        } catch {
            if hostApplied { _ = try? hostBackend.apply(oldHost, previous: plan.host) }
            if let previous {
                try? store.save(previous)
                ports.release(key: attachment.key)
                try? ports.claim(previous.portMappings, key: attachment.key)
            } else {
                try? store.delete(attachment)
                ports.release(key: attachment.key)
            }
            throw Self.cniError(error, doing: "ADD")
        }
        if config.policyGroupID != nil { applyKnownPolicies(store) }
        // A repeated ADD with fewer mappings gives up the others.
        if let previous, previous.portMappings != config.portMappings {
            for (name, owner) in ports.entries() where owner == attachment.key && !config.portMappings.map(PortClaims.name).contains(name) {
                unlink(ports.directory + "/" + name)
            }
        }
        return (config.prevResult ?? CNIResult.empty()).rendered(as: config.cniVersion)
    }

    /// Reads what the plan needs: the container interface's addresses and gateways (prevResult
    /// first, the kernel otherwise), the firewall files, the uplink MTU; and picks the backend
    /// inside the container.
    func observe(_ request: CNIRequest, _ config: PluginConfig, attachment: Attachment, previous: AttachmentRecord?) throws(CNIError) -> (PlanInputs, BackendKind) {
        let netns = request.netns!
        let ifname = attachment.id.ifname
        let ips = config.prevResult?.ips(of: ifname, sandbox: netns) ?? []
        var addresses = ips.map(\.address)
        var gateways = config.gateways
        for ip in ips { if let gateway = ip.gateway, !gateways.contains(where: { $0.family == gateway.family }) { gateways.append(gateway) } }
        let choice = config.backend
        let recorded = previous?.containerBackend
        let hasRules = !(previous?.container.isEmpty ?? true)
        let (observed, kind): (ObservedInterface, BackendKind) = try inNetns(netns) {
            let observed = try DualHomeEngine(try LibNLRouting()).observe(interface: ifname)
            return (observed, try selector.select(choice, recorded: recorded, stateHasRules: hasRules).kind)
        }
        if addresses.isEmpty { addresses = observed.addresses }
        for gateway in observed.discoveredGateways where !gateways.contains(where: { $0.family == gateway.family }) { gateways.append(gateway) }

        var env = environment
        env["CNI_IFNAME"] = ifname
        env["CNI_CONTAINERID"] = attachment.id.containerID
        env["CNI_NETNS"] = netns
        for (key, value) in request.args { env[key] = value }
        if env["HOSTNAME"] == nil {
            var name = [CChar](repeating: 0, count: 256)
            if gethostname(&name, name.count - 1) == 0 { env["HOSTNAME"] = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
        var files: [String] = []
        for file in config.firewall?.files ?? [] {
            do {
                guard let text = try AtomicFile.readString(file.path) else { throw CNIError.config(file.field, "\(file.path) does not exist") }
                files.append(text)
            } catch let error as CNIError { throw error } catch { throw CNIError.config(file.field, "\(error)") }
        }
        var uplinkMTU: UInt32?
        if config.mtu == .auto {
            uplinkMTU = try Self.uplinkMTU()
        }
        let hostInterfaces = (config.prevResult?.interfaces ?? []).filter { $0.sandbox.isEmpty }.map(\.name)
        let inputs = PlanInputs(attachment: attachment, addresses: addresses, gateways: gateways, hostInterfaces: hostInterfaces,
                                args: request.args, environment: env, firewallFiles: files, uplinkMTU: uplinkMTU)
        return (inputs, kind)
    }

    /// The MTU of the interface of the host's IPv4 (else IPv6) default route.
    static func uplinkMTU() throws(CNIError) -> UInt32 {
        do {
            let routing = try LibNLRouting()
            for family in IPFamily.allCases {
                let defaults = try routing.routes(family: family, table: RoutingTable.main).filter { $0.destination.isDefault && $0.interface != nil }
                if let name = defaults.min(by: { $0.effectiveMetric < $1.effectiveMetric })?.interface, let link = try routing.links().first(where: { $0.name == name }) {
                    return link.mtu
                }
            }
        } catch { throw CNIError(CNIError.applyFailed, "cannot read the host's uplink MTU", details: "\(error)") }
        throw CNIError.config("mtu", "\"auto\": the host has no default route to take the uplink's MTU from")
    }

    /// When a policy agent runs on this node, applies the policies it last knew to the node's
    /// containers (the new one included), so enforcement does not wait for its next poll. Best
    /// effort: the agent converges anyway.
    func applyKnownPolicies(_ store: AttachmentStore) {
        let dir = store.stateDir + "/agent/"
        guard let settingsBytes = try? AtomicFile.read(dir + AgentEnforcement.fileName), let settingsJSON = try? JSON.parse(settingsBytes),
              let settings = AgentEnforcement(json: settingsJSON), let policyBytes = try? AtomicFile.read(dir + "policies.json") else { return }
        do {
            let policies = try PolicyDocument.decode(policyBytes)
            let desired = try EnforcementPlanner.plan(policies, containers: store.localContainers(), overlay: settings.overlay, deny: settings.deny,
                                                     style: .for(settings.backend))
            _ = try BackendSelector.backend(settings.backend).apply(desired, previous: Ruleset(owner: EnforcementPlanner.owner))
        } catch {
            FileHandleStderr.write("docknfv: the new container's policies wait for the agent's next poll: \(error)\n")
        }
    }

    // MARK: DEL

    func del(_ request: CNIRequest, _ config: PluginConfig) throws(CNIError) {
        let attachment = Attachment(network: config.name, id: request.attachment!)
        let store = AttachmentStore(stateDir: config.stateDir)
        let lock = try store.lock(timeout: lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        var record: AttachmentRecord?
        var unreadable: CNIError?
        do { record = try store.load(attachment) } catch { unreadable = error }
        try remove(attachment, record: record, netns: request.netns, config: config)
        if let unreadable {
            // Everything of the attachment is gone; the unreadable record is kept aside for a look, not overwritten.
            let path = store.path(attachment)
            rename(path, path + ".unreadable")
            FileHandleStderr.write("docknfv: \(unreadable); moved to \(path).unreadable\n")
        } else {
            try store.delete(attachment)
        }
        PortClaims(store: store).release(key: attachment.key)
    }

    /// Removes everything of `attachment`: its host rules, and inside the container (when the
    /// namespace still exists) its rules and its side's routing. Without a record, by name alone.
    func remove(_ attachment: Attachment, record: AttachmentRecord?, netns: String?, config: PluginConfig) throws(CNIError) {
        let owner = attachment.owner
        do {
            if let kind = record?.hostBackend {
                _ = try BackendSelector.backend(kind).remove(record?.host ?? Ruleset(owner: owner))
            } else {
                // No record: whatever docknfv may have made, under either backend.
                _ = try BackendSelector.backend(.nftables).remove(Ruleset(owner: owner))
                if selector.legacyUsable() && XTablesInventory.holdsRules() { _ = try BackendSelector.backend(.iptables).remove(Ruleset(owner: owner)) }
            }
        } catch { throw Self.cniError(error, doing: "DEL") }
        // A UDP flow that keeps sending would keep its DNAT to the removed container: forget it
        // (best effort: without ctnetlink the flow ends when it goes idle).
        if let record {
            let sources = Set(record.addresses.map(\.address))
            for mapping in record.portMappings where mapping.proto == .udp {
                _ = try? Conntrack.delete(proto: 17, originalDestinationPort: mapping.hostPort, replySources: sources)
            }
        }
        guard let netns = netns ?? record?.netns else { return }
        let ifname = attachment.id.ifname
        let side = record?.side ?? config.side
        let tables: (UInt32, UInt32)? = side.map { side in
            if let record, record.side != nil { return (record.sideTable, record.otherTable) }
            return side == .left ? (config.leftTable, config.rightTable) : (config.rightTable, config.leftTable)
        }
        let containerKind = record?.containerBackend
        let containerRules = record?.container ?? Ruleset(owner: owner)
        do {
            try NetworkNamespace.run(path: netns) {
                // With a record, an empty container ruleset means nothing of ours is there to look for.
                if let containerKind, record?.container.isEmpty == false { _ = try BackendSelector.backend(containerKind).remove(containerRules) }
                else if record == nil { _ = try BackendSelector.backend(.nftables).remove(containerRules) }
                if let tables { try SideRouting.remove(try LibNLRouting(), ifname: ifname, table: tables.0, otherTable: tables.1) }
            }
        } catch let error as NetworkNamespace.Error {
            if case .notFound = error { return } // the container is gone, and its namespace with everything in it
            if case .notANetworkNamespace = error { return }
            throw Self.cniError(error, doing: "DEL")
        } catch { throw Self.cniError(error, doing: "DEL") }
    }

    // MARK: CHECK

    func check(_ request: CNIRequest, _ config: PluginConfig) throws(CNIError) {
        let attachment = Attachment(network: config.name, id: request.attachment!)
        let store = AttachmentStore(stateDir: config.stateDir)
        guard let record = try store.load(attachment) else {
            throw CNIError(CNIError.checkFailed, "CHECK: docknfv has no record of \(attachment.id) on network \(config.name) (was it added?)")
        }
        guard config.prevResult != nil else { throw CNIError.config("prevResult", "missing (CHECK needs the result of ADD)") }
        let (inputs, _) = try observe(request, config, attachment: attachment, previous: record)
        let plan = try AttachmentPlanner.plan(config, inputs)
        var problems: [String] = []
        do {
            let hostKind = record.hostBackend ?? .nftables
            for (key, drift) in try BackendSelector.backend(hostKind).check(plan.host) where !drift.isEmpty {
                problems += drift.missing.map { "host \(key): missing \($0)" } + drift.unexpected.map { "host \(key): unexpected \($0)" }
            }
            let containerKind = record.containerBackend ?? .nftables
            let wanted = config.prevResult!.ips(of: attachment.id.ifname, sandbox: request.netns).map(\.address)
            problems += try inNetns(request.netns!) {
                var out: [String] = []
                let routing = try LibNLRouting()
                let have = Set(try routing.addresses(of: attachment.id.ifname).map(\.address))
                for address in wanted where !have.contains(address) { out.append("\(attachment.id.ifname): address \(address) missing") }
                for (key, drift) in try BackendSelector.backend(containerKind).check(plan.container) where !drift.isEmpty {
                    out += drift.missing.map { "container \(key): missing \($0)" } + drift.unexpected.map { "container \(key): unexpected \($0)" }
                }
                if let dualHome = plan.dualHome { out += try DualHomeEngine(routing).check(dualHome).map(\.description) }
                return out
            }
        } catch let error as CNIError { throw error } catch { throw Self.cniError(error, doing: "CHECK") }
        if !problems.isEmpty {
            throw CNIError(CNIError.checkFailed, "CHECK: \(problems.count) difference(s) for \(attachment.id)", details: problems.joined(separator: "; "))
        }
    }

    // MARK: GC

    /// Removes every attachment of this network that is not in the runtime's list; goes on past
    /// failures and reports them all.
    func gc(_ config: PluginConfig) throws(CNIError) {
        let store = AttachmentStore(stateDir: config.stateDir)
        let lock = try store.lock(timeout: lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        let valid = Set((config.validAttachments ?? []).map { Attachment(network: config.name, id: $0).key })
        var failures: [String] = []
        var known = Set<String>()
        for result in try store.records(network: config.name) {
            switch result {
            case .failure(let error): failures.append(error.description)
            case .success(let record):
                known.insert(record.attachment.key)
                guard !valid.contains(record.attachment.key) else { continue }
                do throws(CNIError) {
                    try remove(record.attachment, record: record, netns: record.netns, config: config)
                    try store.delete(record.attachment)
                    PortClaims(store: store).release(key: record.attachment.key)
                } catch { failures.append("\(record.attachment.id): \(error)") }
            }
        }
        // nftables tables of this network that no record explains (a record lost with its state
        // directory): their names carry the network's part of the key.
        let prefix = "docknfv-cni-" + Attachment(network: config.name, id: AttachmentID(containerID: "", ifname: "")).key.prefix(8) + "-"
        for table in Set(NFTablesInventory.tables().compactMap { $0.split(separator: " ").last.map(String.init) }) where table.hasPrefix(prefix) {
            let key = String(table.dropFirst("docknfv-cni-".count))
            guard !valid.contains(key), !known.contains(key), let owner = try? Owner("cni-" + key) else { continue }
            do { _ = try BackendSelector.backend(.nftables).remove(Ruleset(owner: owner)) } catch { failures.append("table \(table): \(error)") }
        }
        // Host ports still claimed by attachments of this network that are gone.
        let claims = PortClaims(store: store)
        for (name, owner) in claims.entries() where owner.hasPrefix(prefix.dropFirst("docknfv-cni-".count)) && !valid.contains(owner) && !known.contains(owner) {
            unlink(claims.directory + "/" + name)
        }
        if !failures.isEmpty {
            throw CNIError(CNIError.applyFailed, "GC could not remove everything", details: failures.joined(separator: "; "))
        }
    }

    // MARK: STATUS

    /// Cheap, polled: the state directory is usable and the chosen backend can work here.
    func status(_ config: PluginConfig) throws(CNIError) {
        do { try StateDirectory.checkReadable(config.stateDir) } catch {
            throw CNIError(CNIError.notAvailable, "docknfv cannot use its state directory", details: "\(error)")
        }
        if access(config.stateDir, W_OK) != 0 && errno != ENOENT {
            throw CNIError(CNIError.notAvailable, "docknfv cannot write its state directory", details: "\(config.stateDir): \(String(cString: strerror(errno)))")
        }
        guard BackendSelector.effectiveCapability(12) else { // CAP_NET_ADMIN
            throw CNIError(CNIError.notAvailable, "docknfv needs CAP_NET_ADMIN")
        }
        if config.backend == .iptables && !selector.legacyUsable() {
            throw CNIError(CNIError.notAvailable, "backend iptables needs CAP_NET_RAW (libiptc uses a raw socket)")
        }
    }

    // MARK: helpers

    func select(_ choice: BackendChoice, recorded: BackendKind?, hasRules: Bool) throws(CNIError) -> BackendKind {
        do { return try selector.select(choice, recorded: recorded, stateHasRules: hasRules).kind } catch { throw Self.cniError(error, doing: "backend selection") }
    }

    func inNetns<T>(_ path: String, _ body: () throws -> T) throws(CNIError) -> T {
        do { return try NetworkNamespace.run(path: path, body) } catch let error as CNIError { throw error } catch {
            throw Self.cniError(error, doing: "in \(path)")
        }
    }

    static func cniError(_ error: any Error, doing: String) -> CNIError {
        if let error = error as? CNIError { return error }
        if let error = error as? EngineError { return CNIError(error.cniCode, error.message) }
        if let error = error as? NetworkNamespace.Error { return CNIError(CNIError.applyFailed, "cannot enter the container's network namespace", details: error.description) }
        return CNIError(CNIError.applyFailed, "\(doing) failed", details: "\(error)")
    }
}

/// One side's routing objects inside the container: docknfv's routes in its table and its `iif` rule.
enum SideRouting {
    static func remove(_ routing: LibNLRouting, ifname: String, table: UInt32, otherTable: UInt32) throws {
        let operations = RoutingOperations(routing)
        for family in IPFamily.allCases {
            for rule in try routing.rules(family: family)
            where rule.protocol == docknfvRouteProtocol && rule.table == otherTable && rule.inputInterface == ifname {
                _ = try operations.remove(rule)
            }
            for route in try routing.routes(family: family, table: table) where route.protocol == docknfvRouteProtocol {
                _ = try operations.remove(route)
            }
        }
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var text = text
        _ = text.withUTF8 { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
