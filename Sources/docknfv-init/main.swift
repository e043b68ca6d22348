import ArgumentParser
import DualHome
import Foundation
import InitSupervisor
import Routing

// Signals must be blocked before any thread exists so that none can take them by default action.
Supervisor.blockSignals()

struct DockNFVInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docknfv-init",
        abstract: "Set up dual-homed routing for a VNF container, then run and supervise its command.",
        discussion: """
            Reads \(InitConfig.defaultPath) (or --config) and DOCKNFV_* environment variables, waits for the \
            interfaces, installs the LEFT/RIGHT tables and rules (mode route) or the right-side default \
            route (mode vpn), then runs COMMAND as its child, forwarding signals and reaping zombies. \
            Without COMMAND it applies and exits 0.
            Environment: \(InitConfig.environmentNames.values.sorted().joined(separator: ", ")).
            """)

    @Option(name: .long, help: "Configuration file (JSON).")
    var config: String?

    @Flag(name: .long, help: "Only check that the configured routing is in place (exit 1 if not).")
    var check = false

    @Flag(name: .long, help: "Remove the routing docknfv installed for this configuration, then exit.")
    var remove = false

    @Argument(parsing: .postTerminator, help: "The command to run and supervise, after --.")
    var command: [String] = []

    func run() throws {
        let log: (String) -> Void = { FileHandle.standardError.write(Data("docknfv-init: \($0)\n".utf8)) }
        let loaded: InitConfig
        do {
            loaded = try InitConfig.load(path: config, environment: ProcessInfo.processInfo.environment)
        } catch {
            log("error: \(error)")
            throw ExitCode(2)
        }
        do {
            let backend = try LibNLRouting()
            if remove {
                let removed = try DualHomeEngine(backend).remove(loaded.dualHome)
                removed.forEach { log("removed \($0)") }
                log("removed \(removed.count) objects")
                return
            }
            if check {
                let engine = DualHomeEngine(backend)
                let problems = try engine.check(try engine.plan(loaded.dualHome))
                problems.forEach { log("not in place: \($0)") }
                if !problems.isEmpty { throw ExitCode(1) }
                log("routing is in place")
                return
            }
            try InitRunner(config: loaded, hooks: [PersistedRulesHook()], log: log)
                .setUp(backend: backend, pause: Supervisor.waitForSignal)
        } catch let error as ExitCode {
            throw error
        } catch let WaitError.interrupted(signal) {
            log("interrupted by signal \(signal) before start-up finished")
            throw ExitCode(128 + signal)
        } catch let error as InitError {
            log("error: \(error)")
            throw ExitCode(1)
        } catch let error as DualHomeError {
            if case .invalidField = error {
                log("error: \(InitConfigError(error))")
                throw ExitCode(2)
            }
            log("error: \(error)")
            throw ExitCode(1)
        } catch {
            log("error: \(error)")
            throw ExitCode(1)
        }
        guard !command.isEmpty else { return }
        do {
            throw ExitCode(try Supervisor.run(command, log: log))
        } catch let error as Supervisor.Error {
            log("error: \(error)")
            throw ExitCode(127)
        }
    }
}

DockNFVInit.main()
