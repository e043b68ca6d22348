import Foundation
import Testing
import DHCPHook
import DHCPRoutes
import Routing
import StateFiles
import TestSupport

/// Issue 8, the DHCP hook's part: settings (item 10), linear route sync and interruption (item 7),
/// and the pid-file check (item 14).
@Suite("DHCP hook hardening")
struct DHCPHookHardeningTests {
    func withDir<T>(_ body: (String) throws -> T) throws -> T {
        let dir = NSTemporaryDirectory() + "dnfvt-hookh-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try body(dir)
    }

    /// `count` distinct /24 routes via 10.1.0.1 in option-121 form, from 172.`base`.`third`.0 on.
    static func lease(_ reason: String, routes count: Int, base: Int = 16, third: Int = 0) -> [String: String] {
        let text = (0..<count).map { "24 172 \(base + $0 / 256) \(($0 + third) % 256) 10 1 0 1" }.joined(separator: " ")
        return ["reason": reason, "interface": "eth1", "new_rfc3442_classless_static_routes": text]
    }

    // MARK: Settings (item 10)

    @Test(arguments: ["1", "true", "YES", "On"])
    func documentedTrueSpellings(text: String) throws {
        let options = try HookOptions.resolve(environment: ["DOCKNFV_REDIRECT_GATEWAY": text, "DOCKNFV_DHCP_INSTALL_ROUTES": text])
        #expect(options.redirectGateway && options.installRoutes)
    }

    @Test(arguments: ["0", "false", "No", "OFF"])
    func documentedFalseSpellings(text: String) throws {
        let options = try HookOptions.resolve(environment: ["DOCKNFV_REDIRECT_GATEWAY": text, "DOCKNFV_DHCP_INSTALL_ROUTES": text])
        #expect(!options.redirectGateway && !options.installRoutes)
    }

    @Test func defaults() throws {
        #expect(try HookOptions.resolve(environment: [:]) == HookOptions())
        #expect(try HookOptions.resolve(noRoutes: true, environment: ["DOCKNFV_DHCP_INSTALL_ROUTES": "yes"]).installRoutes == false)
        #expect(try HookOptions.resolve(redirectGateway: true, environment: ["DOCKNFV_REDIRECT_GATEWAY": "no"]).redirectGateway)
    }

    @Test(arguments: [
        (["DOCKNFV_DHCP_INSTALL_ROUTES": "perhaps"], "DOCKNFV_DHCP_INSTALL_ROUTES = \"perhaps\": expected one of 1, true, yes, on, 0, false, no, off"),
        (["DOCKNFV_REDIRECT_GATEWAY": "maybe"], "DOCKNFV_REDIRECT_GATEWAY = \"maybe\": expected one of 1, true, yes, on, 0, false, no, off"),
        (["DOCKNFV_REDIRECT_GATEWAY": " 1"], "DOCKNFV_REDIRECT_GATEWAY = \" 1\": expected one of 1, true, yes, on, 0, false, no, off"),
        (["DOCKNFV_REDIRECT_GATEWAY": ""], "DOCKNFV_REDIRECT_GATEWAY is set but empty; unset it for the default"),
        (["DOCKNFV_DHCP_INSTALL_ROUTES": ""], "DOCKNFV_DHCP_INSTALL_ROUTES is set but empty; unset it for the default"),
        (["DOCKNFV_PUSH_FILE": ""], "DOCKNFV_PUSH_FILE is set but empty; unset it for the default"),
        (["DOCKNFV_OPENVPN_MANAGEMENT": ""], "DOCKNFV_OPENVPN_MANAGEMENT is set but empty; unset it for the default"),
        (["DOCKNFV_OPENVPN_PIDFILE": ""], "DOCKNFV_OPENVPN_PIDFILE is set but empty; unset it for the default"),
        (["DOCKNFV_OPENVPN_MANAGEMENT": "localhost"], "DOCKNFV_OPENVPN_MANAGEMENT = \"localhost\": expected unix:PATH or HOST:PORT"),
    ])
    func badSettingsAreErrorsNamingTheVariable(env: [String: String], message: String) {
        #expect { try HookOptions.resolve(environment: env) } throws: { String(describing: $0) == message }
    }

    @Test func emptyOptionsAreErrorsToo() {
        #expect { try HookOptions.resolve(pushFile: "", environment: [:]) } throws: { String(describing: $0) == "--push-file is empty" }
        // An option overrides a variable, but a bad variable is still reported.
        #expect(throws: HookError.self) { try HookOptions.resolve(pushFile: "/x", environment: ["DOCKNFV_PUSH_FILE": ""]) }
    }

    // MARK: Route sync (item 7)

    /// Forwards to an in-memory kernel and counts table dumps.
    final class CountingRouting: RoutingBackend {
        let kernel = InMemoryRouting.vnf()
        var dumps = 0
        func links() throws -> [Link] { try kernel.links() }
        func addresses() throws -> [LinkAddress] { try kernel.addresses() }
        func routes(family: IPFamily, table: UInt32?) throws -> [Route] { dumps += 1; return try kernel.routes(family: family, table: table) }
        func rules(family: IPFamily) throws -> [PolicyRule] { try kernel.rules(family: family) }
        func setLink(_ name: String, up: Bool?, mtu: UInt32?) throws { try kernel.setLink(name, up: up, mtu: mtu) }
        func addAddress(_ address: InterfaceAddress, interface: String) throws { try kernel.addAddress(address, interface: interface) }
        func deleteAddress(_ address: InterfaceAddress, interface: String) throws { try kernel.deleteAddress(address, interface: interface) }
        func addRoute(_ route: Route, replace: Bool) throws { try kernel.addRoute(route, replace: replace) }
        func deleteRoute(_ route: Route) throws { try kernel.deleteRoute(route) }
        func addRule(_ rule: PolicyRule) throws { try kernel.addRule(rule) }
        func deleteRule(_ rule: PolicyRule) throws { try kernel.deleteRule(rule) }
        func readSysctl(_ key: Sysctl) throws -> String { try kernel.readSysctl(key) }
        func writeSysctl(_ key: Sysctl, value: String) throws { try kernel.writeSysctl(key, value: value) }
    }

    /// Linear: one dump of the table per run whatever the number of routes (it was one per route),
    /// and one write per route that changes.
    @Test(arguments: [10, 600])
    func oneTableDumpPerRun(count: Int) throws {
        try withDir { dir in
            let backend = CountingRouting()
            let runner = DHCPHookRunner(options: HookOptions(pushFile: dir + "/push.conf"), log: { _ in })
            let first = try runner.run(environment: Self.lease("BOUND", routes: count), backend: backend)
            #expect(first.routesAdded.count == count && backend.dumps == 1 && backend.kernel.writes == count)
            let renewed = try runner.run(environment: Self.lease("RENEW", routes: count), backend: backend)
            #expect(renewed.routesAdded.isEmpty && !renewed.fileChanged && backend.dumps == 2 && backend.kernel.writes == count)
            let shifted = try runner.run(environment: Self.lease("REBIND", routes: count, third: 1), backend: backend)
            #expect(backend.dumps == 3)
            #expect(shifted.routesAdded.count == 1 && shifted.routesRemoved.count == 1)
            #expect(backend.kernel.routeList.filter { $0.protocol == docknfvRouteProtocol }.count == count)
        }
    }

    /// A gateway change for a prefix docknfv installed replaces the route, and a later failure puts
    /// the old one back (it used to be neither journalled nor reported).
    @Test func replacedRouteIsRolledBack() throws {
        try withDir { dir in
            let kernel = InMemoryRouting.vnf()
            let runner = DHCPHookRunner(options: HookOptions(pushFile: dir + "/push.conf"), log: { _ in })
            _ = try runner.run(environment: ["reason": "BOUND", "interface": "eth1", "new_rfc3442_classless_static_routes": "24 10 7 0 10 1 0 1"], backend: kernel)
            let before = (try AtomicFile.readString(dir + "/push.conf"), kernel.routeList)
            kernel.failOnWrite = kernel.writes + 2
            #expect(throws: HookError.self) {
                try runner.run(environment: ["reason": "RENEW", "interface": "eth1",
                                             "new_rfc3442_classless_static_routes": "24 10 7 0 10 1 0 9 24 10 8 0 10 1 0 1"], backend: kernel)
            }
            #expect(Set(kernel.routeList) == Set(before.1))
            #expect(try AtomicFile.readString(dir + "/push.conf") == before.0)
        }
    }

    /// A termination signal part-way (simulated by the poll) rolls back every route of this run and
    /// leaves the old push file — at every point before the file is replaced.
    @Test(arguments: [1, 150, 300, 310, 321])
    func interruptionRollsBack(afterPolls: Int) throws {
        try withDir { dir in
            let kernel = InMemoryRouting.vnf()
            let file = dir + "/push.conf"
            _ = try DHCPHookRunner(options: HookOptions(pushFile: file), log: { _ in })
                .run(environment: Self.lease("BOUND", routes: 20, base: 20), backend: kernel)
            let before = (try AtomicFile.readString(file), Set(kernel.routeList))
            final class Polls: @unchecked Sendable { var count = 0 } // one thread
            let polls = Polls()
            let runner = DHCPHookRunner(options: HookOptions(pushFile: file), log: { _ in }, interrupted: {
                polls.count += 1
                return polls.count >= afterPolls ? SIGTERM : nil
            })
            // 300 new routes and 20 stale ones: a poll before each change, and one before the file.
            #expect(throws: HookError.interrupted(signal: SIGTERM)) {
                try runner.run(environment: Self.lease("RENEW", routes: 300), backend: kernel)
            }
            #expect(Set(kernel.routeList) == before.1)
            #expect(try AtomicFile.readString(file) == before.0)
        }
        #expect(String(describing: HookError.interrupted(signal: SIGTERM))
                == "stopped by SIGTERM before the push file was replaced; routes rolled back, push file left as it was")
    }

    @Test func nothingToChangeIsNotInterrupted() throws {
        try withDir { dir in
            let kernel = InMemoryRouting.vnf()
            let file = dir + "/push.conf"
            // Same lease again: nothing changes, so nothing polls and the run completes.
            let runner = DHCPHookRunner(options: HookOptions(pushFile: file), log: { _ in })
            _ = try runner.run(environment: Self.lease("BOUND", routes: 5), backend: kernel)
            let stopping = DHCPHookRunner(options: HookOptions(pushFile: file), log: { _ in }, interrupted: { SIGTERM })
            #expect(try !stopping.run(environment: Self.lease("RENEW", routes: 5), backend: kernel).fileChanged)
        }
    }

    // MARK: Pid file (item 14)

    /// The pid file names a process that is not OpenVPN: it is not signalled, and the warning says why.
    @Test func pidFileOfAnotherProgramIsRefused() throws {
        try withDir { dir in
            let process = try ChildProcess.spawn(["sleep", "30"])
            var reaped = false
            defer { if !reaped { process.signal(SIGKILL); process.wait() } }
            try "\(process.pid)\n".write(toFile: dir + "/openvpn.pid", atomically: true, encoding: .utf8)
            var lines: [String] = []
            let options = HookOptions(pushFile: dir + "/routes.conf", control: .pidFile(path: dir + "/openvpn.pid"), installRoutes: false)
            let outcome = try DHCPHookRunner(options: options, log: { lines.append($0) })
                .run(environment: Self.lease("BOUND", routes: 1), backend: InMemoryRouting.vnf())
            #expect(outcome.fileChanged && !outcome.notified)
            #expect(lines.contains("warning: cannot tell OpenVPN (pid file \(dir)/openvpn.pid): pid \(process.pid) is sleep, not openvpn; not signalling it"))
            // No SIGHUP reached it: had the hook sent one, sleep would be dead of it already, or die
            // of it before this SIGTERM (pending signals are delivered lowest number first).
            process.signal(SIGTERM)
            #expect(process.wait() == 128 + SIGTERM)
            reaped = true
        }
    }

    @Test func stalePidFileIsRefused() throws {
        try withDir { dir in
            let gone = try ChildProcess.spawn(["true"])
            gone.wait()
            try "\(gone.pid)\n".write(toFile: dir + "/openvpn.pid", atomically: true, encoding: .utf8)
            #expect(throws: NotifyError.failed(target: "pid file \(dir)/openvpn.pid", reason: "pid \(gone.pid) is not running (stale pid file?)")) {
                try OpenVPNNotifier.reload(.pidFile(path: dir + "/openvpn.pid"))
            }
        }
    }
}
