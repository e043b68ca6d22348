// docknfv-agent: enforces Cloud Foundry container-to-container policy on this node.
//   docknfv-agent --config FILE
// SIGTERM/SIGINT stop it (the rules stay in force); SIGUSR1 polls at once.
import Agent
import Dispatch
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

func printError(_ text: String) {
    var text = text
    _ = text.withUTF8 { write(2, $0.baseAddress, $0.count) }
}

final class StopFlag: @unchecked Sendable { // set from a signal source, read by the loop
    private var value = false
    private var lock = pthread_mutex_t()
    init() { pthread_mutex_init(&lock, nil) }
    func set() { pthread_mutex_lock(&lock); value = true; pthread_mutex_unlock(&lock) }
    var isSet: Bool { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return value }
}

func loadConfig(_ path: String) -> AgentConfig {
    do {
        guard let bytes = try AtomicFile.read(path) else {
            printError("docknfv-agent: config \(path) does not exist\n")
            exit(78)
        }
        return try AgentConfig(json: try JSON.parse(bytes))
    } catch {
        printError("docknfv-agent: \(path): \(error)\n")
        exit(78) // EX_CONFIG
    }
}

func main() async {
    let arguments = CommandLine.arguments
    guard arguments.count == 3, arguments[1] == "--config" else {
        printError("usage: docknfv-agent --config FILE\n")
        exit(64)
    }
    let config = loadConfig(arguments[2])
    let agent: Agent
    do { agent = try Agent(config: config) } catch {
        printError("docknfv-agent: \(error)\n")
        exit(78)
    }
    let stop = StopFlag()
    var sources: [DispatchSourceSignal] = []
    let actions: [(Int32, @Sendable () -> Void)] = [(SIGTERM, { stop.set() }), (SIGINT, { stop.set() }), (SIGUSR1, { agent.forcePoll() })]
    for (signal, action) in actions {
        Glibc.signal(signal, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
        source.setEventHandler(handler: action)
        source.resume()
        sources.append(source)
    }
    let server = MetricsServer(agent: agent)
    if let address = config.metricsAddress {
        do { try await server.start(host: address.host, port: address.port) } catch {
            printError("docknfv-agent: metricsAddress \(address.host):\(address.port): \(error)\n")
            exit(78)
        }
    }
    agent.log.info("started", ["policyServerURL": config.policyServerURL, "overlayNetwork": config.overlayNetwork.description])
    await agent.run { stop.isSet }
    await server.stop()
    withExtendedLifetime(sources) {}
}

await main()
exit(0)
