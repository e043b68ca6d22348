import Foundation
import Testing
import DHCPHook
import DHCPRoutes
import Routing
import StateFiles
import TestSupport

@Suite("DHCP hook runner")
struct DHCPHookRunnerTests {
    final class Log: @unchecked Sendable { var lines: [String] = [] } // used from one thread

    func withDir<T>(_ body: (String) throws -> T) throws -> T {
        let dir = NSTemporaryDirectory() + "dnfvt-hook-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try body(dir)
    }

    func lease(_ reason: String, _ routes: String?) -> [String: String] {
        var env = ["reason": reason, "interface": "eth1"]
        if let routes { env["new_rfc3442_classless_static_routes"] = routes }
        return env
    }

    func backend() -> InMemoryRouting {
        let backend = InMemoryRouting.vnf()
        return backend
    }

    @Test func publishThenSameLeaseThenChangeThenWithdraw() throws {
        try withDir { dir throws in
            let file = dir + "/routes.conf"
            let kernel = backend()
            let log = Log()
            let runner = DHCPHookRunner(options: HookOptions(pushFile: file), log: { log.lines.append($0) })

            let first = try runner.run(environment: lease("BOUND", "24 192 168 50 10 1 0 1 16 10 20 10 1 0 1"), backend: kernel)
            #expect(first.fileChanged)
            #expect(first.routesAdded == ["192.168.50.0/24 via 10.1.0.1 dev eth1 table main", "10.20.0.0/16 via 10.1.0.1 dev eth1 table main"])
            let content = try #require(try AtomicFile.readString(file))
            #expect(content.contains("push \"route 192.168.50.0 255.255.255.0\"\npush \"route 10.20.0.0 255.255.0.0\"\n"))

            let again = try runner.run(environment: lease("RENEW", "24 192 168 50 10 1 0 1 16 10 20 10 1 0 1"), backend: kernel)
            #expect(!again.fileChanged && again.routesAdded.isEmpty && again.routesRemoved.isEmpty)

            let changed = try runner.run(environment: lease("REBIND", "24 192 168 60 10 1 0 1 16 10 20 10 1 0 1"), backend: kernel)
            #expect(changed.fileChanged)
            #expect(changed.routesAdded == ["192.168.60.0/24 via 10.1.0.1 dev eth1 table main"])
            #expect(changed.routesRemoved.count == 1)
            #expect(log.lines.contains("push file: + push \"route 192.168.60.0 255.255.255.0\""))
            #expect(log.lines.contains("push file: - push \"route 192.168.50.0 255.255.255.0\""))

            let gone = try runner.run(environment: lease("EXPIRE", nil), backend: kernel)
            #expect(gone.fileChanged)
            #expect(gone.routesRemoved.count == 2)
            #expect(!(try AtomicFile.readString(file)!).contains("push \""))
            #expect(kernel.routeList.filter { $0.protocol == docknfvRouteProtocol }.isEmpty)
            // The runtime's default route was never touched.
            #expect(kernel.routeList.count == 1)
        }
    }

    @Test(arguments: ["24 10 1", "33 1 2 3 4 5", "24 10 x 0 10 1 0 1"])
    func badLeaseChangesNothing(routes: String) throws {
        try withDir { dir throws in
            let file = dir + "/routes.conf"
            let kernel = backend()
            let runner = DHCPHookRunner(options: HookOptions(pushFile: file), log: { _ in })
            _ = try runner.run(environment: lease("BOUND", "24 192 168 50 10 1 0 1"), backend: kernel)
            let before = (try AtomicFile.readString(file), kernel.routeList)
            #expect(throws: HookError.self) { try runner.run(environment: lease("RENEW", routes), backend: kernel) }
            #expect(try AtomicFile.readString(file) == before.0)
            #expect(kernel.routeList == before.1)
        }
    }

    @Test func unknownReasonAndMissingVariables() throws {
        try withDir { dir throws in
            let runner = DHCPHookRunner(options: HookOptions(pushFile: dir + "/f"), log: { _ in })
            #expect(throws: HookError.unknownReason("BOGUS")) { try runner.run(environment: ["reason": "BOGUS"], backend: backend()) }
            #expect(throws: HookError.missingVariable("reason")) { try runner.run(environment: [:], backend: backend()) }
            #expect(throws: HookError.missingVariable("interface")) { try runner.run(environment: ["reason": "BOUND"], backend: backend()) }
            #expect(try runner.run(environment: ["reason": "PREINIT"], backend: backend()).action == .ignore)
            #expect(!FileManager.default.fileExists(atPath: dir + "/f"))
        }
    }

    @Test func routeFailureRollsBackAndLeavesTheFile() throws {
        try withDir { dir throws in
            let file = dir + "/routes.conf"
            let kernel = backend()
            let runner = DHCPHookRunner(options: HookOptions(pushFile: file), log: { _ in })
            _ = try runner.run(environment: lease("BOUND", "24 192 168 50 10 1 0 1"), backend: kernel)
            let before = (try AtomicFile.readString(file), kernel.routeList)
            kernel.failOnWrite = kernel.writes + 2 // the second of three new routes
            #expect(throws: HookError.self) {
                try runner.run(environment: lease("RENEW", "24 10 7 0 10 1 0 1 24 10 8 0 10 1 0 1 24 10 9 0 10 1 0 1"), backend: kernel)
            }
            #expect(try AtomicFile.readString(file) == before.0)
            #expect(kernel.routeList == before.1)
        }
    }

    @Test func unwritableFileRollsBackTheRoutes() throws {
        let kernel = backend()
        let runner = DHCPHookRunner(options: HookOptions(pushFile: "/nonexistent-dir/routes.conf"), log: { _ in })
        #expect(throws: HookError.self) { try runner.run(environment: lease("BOUND", "24 192 168 50 10 1 0 1"), backend: kernel) }
        #expect(kernel.routeList.count == 1)
    }

    @Test func managementInterfaceIsToldOnlyWhenTheFileChanges() throws {
        try withDir { dir throws in
            let socketPath = dir + "/mgmt.sock"
            let server = try FakeManagementServer(path: socketPath)
            defer { server.stop() }
            let options = HookOptions(pushFile: dir + "/routes.conf", control: .managementUnix(path: socketPath), installRoutes: false)
            let runner = DHCPHookRunner(options: options, log: { _ in })
            #expect(try runner.run(environment: lease("BOUND", "24 192 168 50 10 1 0 1"), backend: backend()).notified)
            #expect(try !runner.run(environment: lease("RENEW", "24 192 168 50 10 1 0 1"), backend: backend()).notified)
            #expect(try runner.run(environment: lease("RENEW", "24 192 168 51 10 1 0 1"), backend: backend()).notified)
            // The server thread records the last "quit" after the client has moved on: give it a moment.
            for _ in 0..<100 where server.commands.count < 4 { usleep(20_000) }
            #expect(server.commands == ["signal SIGHUP", "quit", "signal SIGHUP", "quit"])
        }
    }

    @Test func missingOpenVPNIsAWarningNotAFailure() throws {
        try withDir { dir throws in
            let log = Log()
            let options = HookOptions(pushFile: dir + "/routes.conf", control: .managementUnix(path: dir + "/none.sock"), installRoutes: false)
            let outcome = try DHCPHookRunner(options: options, log: { log.lines.append($0) })
                .run(environment: lease("BOUND", "24 192 168 50 10 1 0 1"), backend: backend())
            #expect(outcome.fileChanged && !outcome.notified)
            #expect(log.lines.contains { $0.hasPrefix("warning: cannot tell OpenVPN (management unix:") })
        }
    }

    @Test func pidFileGetsSIGHUP() throws {
        try withDir { dir throws in
            // The hook signals only OpenVPN: a copy of sleep named openvpn stands in for it.
            let openvpn = dir + "/openvpn"
            try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: openvpn)
            let process = try ChildProcess.spawn([openvpn, "30"])
            try "\(process.pid)\n".write(toFile: dir + "/openvpn.pid", atomically: true, encoding: .utf8)
            let options = HookOptions(pushFile: dir + "/routes.conf", control: .pidFile(path: dir + "/openvpn.pid"), installRoutes: false)
            #expect(try DHCPHookRunner(options: options, log: { _ in }).run(environment: lease("BOUND", "24 10 9 0 10 1 0 1"), backend: backend()).notified)
            #expect(process.wait() == 128 + SIGHUP)
        }
    }

    @Test(arguments: [("unix:/run/openvpn.sock", OpenVPNControl.managementUnix(path: "/run/openvpn.sock")),
                      ("127.0.0.1:7505", .managementTCP(host: "127.0.0.1", port: 7505)),
                      ("[::1]:7505", .managementTCP(host: "::1", port: 7505))])
    func managementAddresses(text: String, control: OpenVPNControl) {
        #expect(OpenVPNControl.management(text) == control)
    }

    @Test(arguments: ["unix:", "localhost", "host:0", "host:99999", ":7505"])
    func badManagementAddresses(text: String) {
        #expect(OpenVPNControl.management(text) == nil)
    }
}

/// A Unix-socket peer speaking the OpenVPN management protocol: greets, records commands,
/// answers SUCCESS to `signal`.
final class FakeManagementServer: @unchecked Sendable { // state guarded by `lock`
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var thread: Thread?

    var commands: [String] { lock.lock(); defer { lock.unlock() }; return received }

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0, listen(fd, 4) == 0 else { throw TestFailure("cannot listen on \(path)") }
        let thread = Thread { [unowned self] in self.serve() }
        self.thread = thread
        thread.start()
    }

    private func serve() {
        while true {
            let conn = accept(fd, nil, nil)
            if conn < 0 { return }
            let greeting = Array(">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\r\n".utf8)
            _ = write(conn, greeting, greeting.count)
            var buffer = [UInt8](repeating: 0, count: 512)
            var pending = ""
            reading: while true {
                let count = read(conn, &buffer, buffer.count)
                if count <= 0 { break }
                pending += String(decoding: buffer[..<count], as: UTF8.self)
                while let newline = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<newline]).trimmingCharacters(in: .whitespacesAndNewlines)
                    pending = String(pending[pending.index(after: newline)...])
                    lock.lock(); received.append(line); lock.unlock()
                    if line == "quit" { break reading }
                    let answer = Array(">LOG:noise\r\nSUCCESS: signal SIGHUP thrown\r\n".utf8)
                    _ = write(conn, answer, answer.count)
                }
            }
            close(conn)
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}
