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
            Environment: DOCKNFV_PUSH_FILE, DOCKNFV_OPENVPN_MANAGEMENT, DOCKNFV_OPENVPN_PIDFILE, \
            DOCKNFV_REDIRECT_GATEWAY, DOCKNFV_DHCP_INSTALL_ROUTES.
            """)

    @Option(help: "OpenVPN include file to write (default \(HookOptions.defaultPushFile)).")
    var pushFile: String?

    @Option(help: "OpenVPN management interface: unix:PATH or HOST:PORT.")
    var management: String?

    @Option(help: "OpenVPN pid file (SIGHUP is sent to that pid) when there is no management interface.")
    var pidFile: String?

    @Flag(help: "Push a DHCP default route as redirect-gateway def1.")
    var redirectGateway = false

    @Flag(help: "Only write the push file; do not install routes.")
    var noRoutes = false

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let log: (String) -> Void = { FileHandle.standardError.write(Data("docknfv-dhcp-hook: \($0)\n".utf8)) }
        var options = HookOptions()
        options.pushFile = pushFile ?? env["DOCKNFV_PUSH_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? HookOptions.defaultPushFile
        if let text = management ?? env["DOCKNFV_OPENVPN_MANAGEMENT"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let control = OpenVPNControl.management(text) else {
                log("error: management address \"\(text)\" is not unix:PATH or HOST:PORT")
                throw ExitCode(2)
            }
            options.control = control
        } else if let path = pidFile ?? env["DOCKNFV_OPENVPN_PIDFILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            options.control = .pidFile(path: path)
        }
        options.redirectGateway = redirectGateway || Self.truthy(env["DOCKNFV_REDIRECT_GATEWAY"])
        options.installRoutes = !noRoutes && !Self.falsy(env["DOCKNFV_DHCP_INSTALL_ROUTES"])
        do {
            _ = try DHCPHookRunner(options: options, log: log).run(environment: env, backend: try LibNLRouting())
        } catch {
            log("error: \(error)")
            throw ExitCode(1)
        }
    }

    static func truthy(_ value: String?) -> Bool { ["1", "true", "yes", "on"].contains(value?.lowercased() ?? "") }
    static func falsy(_ value: String?) -> Bool { ["0", "false", "no", "off"].contains(value?.lowercased() ?? "") }
}

DockNFVDHCPHook.main()
