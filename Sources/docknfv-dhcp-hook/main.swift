import ArgumentParser
import DHCPHook
import Foundation
import Routing

struct DockNFVDHCPHook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docknfv-dhcp-hook",
        abstract: "dhclient exit hook: turn DHCP classless static routes (option 121/249) into OpenVPN push config.",
        discussion: """
            Reads dhclient's environment (reason, interface, new_rfc3442_classless_static_routes, \
            new_ms_classless_static_routes). On BOUND, RENEW, REBIND and REBOOT it installs the routes in \
            the main table through the interface and writes one push "route NETWORK NETMASK" line per \
            route to the push file (atomically); on EXPIRE, FAIL, RELEASE and STOP it withdraws them. \
            OpenVPN is told (SIGHUP) only when the file's content changed.
            Environment: \(HookSetting.allCases.map(\.variable).joined(separator: ", ")) (booleans: 1/0, \
            true/false, yes/no, on/off; a variable set but empty is an error).
            """)

    @Option(name: .customLong(HookSetting.pushFile.option), help: "OpenVPN include file to write (default \(HookOptions.defaultPushFile)).")
    var pushFile: String?

    @Option(name: .customLong(HookSetting.management.option), help: "OpenVPN management interface: unix:PATH or HOST:PORT.")
    var management: String?

    @Option(name: .customLong(HookSetting.pidFile.option), help: "OpenVPN pid file (SIGHUP is sent to that pid) when there is no management interface.")
    var pidFile: String?

    @Flag(name: .customLong(HookSetting.redirectGateway.option), help: "Push a DHCP default route as redirect-gateway def1.")
    var redirectGateway = false

    @Flag(name: .customLong(HookSetting.installRoutes.option), help: "Only write the push file; do not install routes.")
    var noRoutes = false

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let log: (String) -> Void = { FileHandle.standardError.write(Data("docknfv-dhcp-hook: \($0)\n".utf8)) }
        let options: HookOptions
        do {
            options = try HookOptions.resolve(pushFile: pushFile, management: management, pidFile: pidFile,
                                              redirectGateway: redirectGateway, noRoutes: noRoutes, environment: env)
        } catch {
            log("error: \(error)")
            throw ExitCode(2)
        }
        do {
            let runner = DHCPHookRunner(options: options, log: log, interrupted: TerminationSignals.take)
            _ = try runner.run(environment: env, backend: try LibNLRouting())
        } catch HookError.interrupted(let signal) {
            log("error: \(HookError.interrupted(signal: signal))")
            throw ExitCode(128 + signal)
        } catch {
            log("error: \(error)")
            throw ExitCode(1)
        }
        if let late = TerminationSignals.take() {
            log("\(TerminationSignals.name(late)) arrived after the push file was replaced; the run was finished")
        }
    }
}

// Before anything else, while this is the only thread: a termination signal must not cut a route
// sync short (the runner polls for it and rolls back, or finishes).
TerminationSignals.hold()
DockNFVDHCPHook.main()
