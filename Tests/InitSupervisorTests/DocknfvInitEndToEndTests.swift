import Foundation
import Testing
import TestSupport

/// left host ── eth1 [VNF] eth0 ── right host, with 203.0.113.7 / 2001:db8:feed::7 behind the right
/// host on no subnet the VNF is attached to.
struct VNFLab {
    let left: TestNamespace, vnf: TestNamespace, right: TestNamespace
    static let env = ["DOCKNFV_LEFT_GW=10.1.0.1,fd01::1", "DOCKNFV_RIGHT_GW=10.2.0.1,fd02::1", "DOCKNFV_WAIT_TIMEOUT=5",
                      "DOCKNFV_STATE_DIR=/nonexistent/dnfvt-no-state"]

    static func with(leftInterface: Bool = true, _ body: (VNFLab) throws -> Void) throws {
        try withNamespaces(["left", "vnf", "right"]) { ns in
            let lab = VNFLab(left: ns[0], vnf: ns[1], right: ns[2])
            if leftInterface { try lab.attachLeft() }
            try connect(ns[1], "eth0", ["10.2.0.2/24", "fd02::2/64"], ns[2], "eth0", ["10.2.0.1/24", "fd02::1/64"])
            _ = try ns[2].ip("addr add 203.0.113.7/32 dev lo")
            _ = try ns[2].ip("addr add 2001:db8:feed::7/128 dev lo")
            _ = try ns[2].ip("route add 10.1.0.0/24 via 10.2.0.2")
            _ = try ns[2].ip("-6 route add fd01::/64 via fd02::2")
            try body(lab)
        }
    }

    func attachLeft() throws {
        try connect(vnf, "eth1", ["10.1.0.2/24", "fd01::2/64"], left, "eth0", ["10.1.0.1/24", "fd01::1/64"])
        _ = try left.ip("route add default via 10.1.0.2")
        _ = try left.ip("-6 route add default via fd01::2")
    }

    /// Runs docknfv-init inside the VNF namespace to completion.
    func initRun(_ env: [String] = VNFLab.env, _ arguments: [String] = []) throws -> CommandResult {
        try runCommand(["ip", "netns", "exec", vnf.name, "env"] + env + [TestEnv.binary("docknfv-init")] + arguments)
    }

    /// Starts docknfv-init in the background (the pid is docknfv-init's own: `ip netns exec` and
    /// `env` exec without forking).
    func initStart(_ env: [String] = VNFLab.env, _ arguments: [String], stderr: Int32? = nil) throws -> ChildProcess {
        try ChildProcess.spawn(["ip", "netns", "exec", vnf.name, "env"] + env + [TestEnv.binary("docknfv-init")] + arguments, stderr: stderr)
    }

    func ping(_ address: String) throws -> Bool {
        try left.run(["ping", address.contains(":") ? "-6" : "-4", "-c1", "-W1", address]).succeeded
    }

    func tcp(_ address: String, port: UInt16) throws -> Bool {
        let server = try TCPProbe.startEchoServer(in: right, address: address, port: port)
        _ = server
        let ok = try TCPProbe.echo(from: left, to: address, port: port, timeoutMs: 1500)
        if !ok { _ = try? TCPProbe.echo(from: right, to: address, port: port, timeoutMs: 500) } // release the listener
        return ok
    }

    var docknfvState: String {
        get throws {
            // Everything stamped with docknfv's protocol (78), in any table, and any rule of ours.
            try [vnf.ip("-4 route show table all"), vnf.ip("-6 route show table all"), vnf.ip("-4 rule show"), vnf.ip("-6 rule show")]
                .joined(separator: "\n").split(separator: "\n").filter { $0.contains("proto 78") }.joined(separator: "\n")
        }
    }
}

@Suite("docknfv-init end to end", .enabled(if: TestEnv.privileged), .serialized)
struct DocknfvInitEndToEndTests {
    @Test func trafficCrossesTheVNFByTheDualHomeTablesAlone() throws {
        try VNFLab.with { lab in
            #expect(try !lab.ping("203.0.113.7"))
            #expect(try !lab.tcp("203.0.113.7", port: 17001))

            let result = try lab.initRun()
            #expect(result.status == 0, "\(result)")
            #expect(result.stderr.contains("route mode: 16 objects planned, 16 changed"), "\(result)")

            // The VNF's main table still holds nothing but its connected routes.
            let main = try lab.vnf.ip("-4 route show table main").split(separator: "\n")
            #expect(main.count == 2)
            #expect(main.allSatisfy { $0.contains("proto kernel scope link") })
            #expect(!(try lab.vnf.ip("-6 route show table main")).contains("default"))

            #expect(try lab.ping("203.0.113.7"))
            #expect(try lab.ping("2001:db8:feed::7"))
            #expect(try lab.tcp("203.0.113.7", port: 17002))
            #expect(try lab.tcp("2001:db8:feed::7", port: 17003))

            let check = try lab.initRun(VNFLab.env, ["--check"])
            #expect(check.status == 0, "\(check)")

            // Applying again changes nothing.
            let again = try lab.initRun()
            #expect(again.stderr.contains("16 objects planned, 0 changed"), "\(again)")

            let removed = try lab.initRun(VNFLab.env, ["--remove"])
            #expect(removed.status == 0, "\(removed)")
            #expect(try lab.docknfvState.isEmpty)
            #expect(try !lab.ping("203.0.113.7"))
            #expect(try !lab.ping("2001:db8:feed::7"))
            #expect(try !lab.tcp("203.0.113.7", port: 17004))

            let checkAfter = try lab.initRun(VNFLab.env, ["--check"])
            #expect(checkAfter.status == 1)
            #expect(checkAfter.stderr.contains("not in place: route default via 10.1.0.1 dev eth1 table 101: missing"))
        }
    }

    @Test func gatewayGivenByTheNetworkIsUsed() throws {
        try VNFLab.with { lab in
            _ = try lab.vnf.ip("route add default via 10.2.0.1 dev eth0") // as the runtime would
            let result = try lab.initRun(["DOCKNFV_LEFT_GW=10.1.0.1"])
            #expect(result.status == 0, "\(result)")
            #expect(try lab.vnf.ip("route show table 102").contains("default via 10.2.0.1 dev eth0 proto 78"))
            #expect(try lab.ping("203.0.113.7"))
        }
    }

    /// dockvpn: only the right side's default route, in main; the left interface may still wait for
    /// its DHCP address.
    @Test func vpnModeSetsTheRightDefaultRouteOnly() throws {
        try VNFLab.with(leftInterface: false) { lab in
            // The left veth exists but has no address yet (dhclient would give it one later).
            let tmpA = "dv\(UInt32.random(in: 0..<1_000_000))", tmpB = "dv\(UInt32.random(in: 0..<1_000_000))"
            try mustRun(["ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB])
            try mustRun(["ip", "link", "set", tmpA, "netns", lab.vnf.name, "name", "eth1"])
            try mustRun(["ip", "link", "set", tmpB, "netns", lab.left.name, "name", "eth0"])
            // The runtime installed a default route via another gateway on the right.
            _ = try lab.right.ip("addr add 10.2.0.9/24 dev eth0")
            _ = try lab.vnf.ip("route add default via 10.2.0.9 dev eth0")
            let env = ["DOCKNFV_MODE=vpn", "DOCKNFV_RIGHT_GW=10.2.0.1", "DOCKNFV_WAIT_TIMEOUT=3", "DOCKNFV_STATE_DIR=/nonexistent/dnfvt-no-state"]
            let result = try lab.initRun(env)
            #expect(result.status == 0, "\(result)")
            #expect(result.stderr.contains("replaced route default via 10.2.0.9 dev eth0"), "\(result)")
            #expect(try lab.vnf.ip("route show default").contains("default via 10.2.0.1 dev eth0 proto 78"))
            #expect(!(try lab.vnf.ip("rule show")).contains("proto 78"))
            #expect(try lab.vnf.ip("route show table all").split(separator: "\n").filter { $0.contains("table 101") || $0.contains("table 102") }.isEmpty)
            #expect(try lab.initRun(env, ["--check"]).status == 0)
            // The VNF itself now reaches what lies behind the right gateway.
            #expect(try lab.vnf.run(["ping", "-c1", "-W1", "203.0.113.7"]).succeeded)
            #expect(try lab.initRun(env, ["--remove"]).status == 0)
            #expect(!(try lab.vnf.ip("route show default")).contains("proto 78"))
        }
    }

    @Test func configFileWorksLikeTheEnvironment() throws {
        try VNFLab.with { lab in
            let path = NSTemporaryDirectory() + "dnfvt-init-\(UUID().uuidString).json"
            try #"{"left": {"gateway": ["10.1.0.1"], "table": 201}, "right": {"gateway": "10.2.0.1", "table": 202}, "rulePriority": 300}"#
                .write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = try lab.initRun([], ["--config", path])
            #expect(result.status == 0, "\(result)")
            #expect(try lab.vnf.ip("rule show").contains("300:\tfrom all iif eth1 lookup 202 proto 78"))
            #expect(try lab.ping("203.0.113.7"))
        }
    }

    /// Bad input: a clear error naming the field, a non-zero exit, and nothing applied.
    @Test(arguments: [
        (["DOCKNFV_LEFT_GW=10.9.9.9", "DOCKNFV_RIGHT_GW=10.2.0.1"], Int32(2), "left.gateway (DOCKNFV_LEFT_GW) = \"10.9.9.9\""),
        (["DOCKNFV_LEFT_GW=10.1.0.1", "DOCKNFV_RIGHT_GW=nope"], 2, "DOCKNFV_RIGHT_GW = \"nope\""),
        (["DOCKNFV_LEFT_TABLE=254"], 2, "left.table (DOCKNFV_LEFT_TABLE) = \"254\""),
        (["DOCKNFV_LEFT_TABLE=7", "DOCKNFV_RIGHT_TABLE=7"], 2, "right.table"),
        (["DOCKNFV_MODE=bridge"], 2, "DOCKNFV_MODE = \"bridge\": unknown mode"),
        (["DOCKNFV_LEFT_IF=ghost0", "DOCKNFV_WAIT_TIMEOUT=0.3", "DOCKNFV_LEFT_GW=10.1.0.1"], 1, "ghost0 does not exist"),
        (["DOCKNFV_RIGHT_GW=10.2.0.1"], 1, "left.gateway: no gateway configured for eth1"),
    ])
    func badInputAppliesNothing(env: [String], status: Int32, message: String) throws {
        try VNFLab.with { lab in
            let result = try lab.initRun(env)
            #expect(result.status == status, "\(result)")
            #expect(result.stderr.contains(message), "\(result)")
            #expect(try lab.docknfvState.isEmpty)
            #expect(try lab.vnf.mustRun(["sysctl", "-n", "net.ipv4.ip_forward"]).hasPrefix("0"))
        }
    }

    @Test func unparsableConfigFile() throws {
        try VNFLab.with { lab in
            let path = NSTemporaryDirectory() + "dnfvt-init-\(UUID().uuidString).json"
            try "{ not json".write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = try lab.initRun([], ["--config", path])
            #expect(result.status == 2)
            #expect(result.stderr.contains("config \(path): not valid JSON"), "\(result)")
        }
    }

    @Test func waitsForALateInterface() throws {
        try VNFLab.with(leftInterface: false) { lab in
            let stderr = try PipeLines()
            let process = try lab.initStart(VNFLab.env, [], stderr: stderr.writeEnd)
            stderr.closeWriteEnd()
            var reaped = false
            defer { if !reaped { process.signal(SIGKILL); process.wait() } }
            // docknfv-init announces the wait, looks, finds eth1 missing and pauses between two
            // looks (blocked in sigtimedwait): only then does the interface appear.
            #expect(stderr.waitForLine(containing: "waiting up to 5.0s for eth1 and eth0") != nil, "\(stderr.lines)")
            #expect(waitUntil { blockingSyscalls(of: process.pid).contains(rtSigtimedwaitSyscall) }, "never paused: \(stderr.lines)")
            #expect(process.poll() == nil, "\(stderr.lines)")
            try lab.attachLeft()
            let status = process.wait()
            reaped = true
            #expect(status == 0, "\(stderr.lines)")
            #expect(try lab.ping("203.0.113.7"))
        }
    }

    // MARK: Supervision

    @Test(arguments: [("exit 7", Int32(7)), ("exit 0", 0), ("kill -KILL $$", 137), ("kill -TERM $$", 143)])
    func exitStatusIsTheChilds(script: String, status: Int32) throws {
        try VNFLab.with { lab in
            let result = try lab.initRun(VNFLab.env, ["--", "sh", "-c", script])
            #expect(result.status == status, "\(result)")
        }
    }

    @Test func missingCommandExits127() throws {
        try VNFLab.with { lab in
            let result = try lab.initRun(VNFLab.env, ["--", "/nonexistent/command"])
            #expect(result.status == 127)
            #expect(result.stderr.contains("cannot start /nonexistent/command: command not found"), "\(result)")
        }
    }

    @Test(arguments: [(SIGTERM, "TERM"), (SIGINT, "INT"), (SIGHUP, "HUP"), (SIGUSR1, "USR1"), (SIGUSR2, "USR2")])
    func signalsAreForwardedToTheChild(signal: Int32, name: String) throws {
        try VNFLab.with { lab in
            let marker = NSTemporaryDirectory() + "dnfvt-sig-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: marker) }
            // The child exits with 40 + signal number when (and only when) it receives the signal.
            let script = "trap 'exit $((40 + \(signal)))' \(name); touch \(marker); while :; do sleep 0.05; done"
            let process = try lab.initStart(VNFLab.env, ["--", "sh", "-c", script])
            // The marker exists once the child's trap is set.
            let ready = waitUntil { FileManager.default.fileExists(atPath: marker) }
            #expect(ready)
            process.signal(ready ? signal : SIGKILL)
            #expect(process.wait() == 40 + signal)
        }
    }

    /// The shell lines shared by the reaping tests: leave an orphan behind (its parent exits at
    /// once), record who adopted it, end it, and wait (bounded) until its /proc entry is gone —
    /// a zombie keeps it, so "reaped=yes" means someone collected its exit status.
    static let orphanScript = """
        orphan=$(sh -c 'sleep 60 >/dev/null 2>&1 </dev/null & echo $!')
        parent=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$orphan/status)
        kill $orphan
        i=0; while [ -e /proc/$orphan ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
        if [ -e /proc/$orphan ]; then reaped=no; else reaped=yes; fi
        """

    /// As PID 1 of a new PID namespace, docknfv-init adopts and reaps orphans.
    @Test func reapsZombiesAsPID1() throws {
        try VNFLab.with { lab in
            let script = Self.orphanScript + """

                z=0
                for s in /proc/[0-9]*/stat; do [ "$(cut -d' ' -f3 "$s" 2>/dev/null)" = Z ] && z=$((z+1)); done
                echo "pid1=$(cat /proc/1/comm) parent=$parent reaped=$reaped zombies=$z"
                """
            let result = try runCommand(["unshare", "--pid", "--fork", "--mount-proc", "ip", "netns", "exec", lab.vnf.name, "env"]
                                        + VNFLab.env + [TestEnv.binary("docknfv-init"), "--", "sh", "-c", script])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("pid1=docknfv-init parent=1 reaped=yes zombies=0"), "\(result)")
        }
    }

    /// Not PID 1 (e.g. under `ip netns exec`), it becomes a child subreaper: orphans are re-parented
    /// to it and reaped.
    @Test func reapsOrphansAsSubreaper() throws {
        try VNFLab.with { lab in
            // $PPID is docknfv-init (the script is its child).
            let script = Self.orphanScript + """

                [ "$parent" = "$PPID" ] && adopted=1 || adopted=0
                zombies=$(grep -l "^PPid:[[:space:]]*$PPID$" /proc/[0-9]*/status 2>/dev/null | xargs -r grep -l '^State:[[:space:]]*Z' | wc -l)
                echo "adopted=$adopted reaped=$reaped zombies=$zombies"
                """
            let result = try lab.initRun(VNFLab.env, ["--", "sh", "-c", script])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("adopted=1 reaped=yes zombies=0"), "\(result)")
        }
    }
}
