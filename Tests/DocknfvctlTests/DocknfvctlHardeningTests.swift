import Foundation
import Testing
import TestSupport

/// Issue 8 at the binary, with both backends: what a user sees — exit statuses, messages, and that
/// `diff` can be trusted — each item in its own test.
@Suite("docknfvctl hardening (issue 8)", .enabled(if: TestEnv.privileged), .serialized)
struct DocknfvctlHardeningTests {
    /// One namespace and a private state directory; everything removed afterwards.
    struct Lab {
        let ns: TestNamespace
        let stateDir: String
        let backend: String

        static func with(_ backend: String, _ body: (Lab) throws -> Void) throws {
            let stateDir = NSTemporaryDirectory() + "dnfvt-hard-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: stateDir) }
            try withNamespaces(["hard"]) { ns in try body(Lab(ns: ns[0], stateDir: stateDir, backend: backend)) }
        }

        var command: [String] { [TestEnv.binary("docknfvctl"), "--netns", ns.path, "--state-dir", stateDir, "--backend", backend] }

        @discardableResult
        func ctl(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
            try runCommand(command + arguments, environment: environment)
        }

        @discardableResult
        func mustCtl(_ arguments: [String]) throws -> String {
            let result = try ctl(arguments)
            guard result.succeeded else { throw TestFailure("docknfvctl \(arguments.joined(separator: " ")): \(result)") }
            return result.stdout
        }
    }

    /// Item 4: udp and mark rules (kernel structs with padding), in chains mixed with other rules,
    /// in several tables: `diff` says "in sync" every time, in fresh processes, and the first
    /// `apply` after the adds commits nothing.
    @Test(arguments: ["iptables", "nftables"])
    func diffIsTrustworthyForUdpAndMarkRules(backend: String) throws {
        try Lab.with(backend) { lab in
            try lab.mustCtl(["rule", "add", "--chain", "INPUT", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            #expect(try lab.mustCtl(["diff"]) == "in sync\n")
            try lab.mustCtl(["chain", "create", "web"])
            for rule in [["-m", "mark", "--mark", "0x1/0xff", "-j", "ACCEPT"], ["-p", "tcp", "--dport", "80", "-j", "web"],
                         ["-m", "mark", "!", "--mark", "0x2", "-j", "DROP"], ["-p", "udp", "-m", "udp", "--sport", "53:54", "-j", "ACCEPT"]] {
                try lab.mustCtl(["rule", "add", "--chain", "FORWARD", "--"] + rule)
            }
            try lab.mustCtl(["rule", "add", "-6", "--chain", "INPUT", "--", "-m", "mark", "--mark", "3", "-j", "ACCEPT"])
            try lab.mustCtl(["rule", "add", "--table", "nat", "--chain", "PREROUTING", "--", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", "10.0.0.2"])
            try lab.mustCtl(["rule", "add", "--table", "mangle", "--chain", "PREROUTING", "--", "-p", "udp", "-j", "MARK", "--set-mark", "5"])
            let applied = try lab.mustCtl(["--json", "apply"])
            let report = try JSONSerialization.jsonObject(with: Data(applied.utf8)) as? [String: Any]
            #expect((report?["committed"] as? [String])?.isEmpty == true, "the first apply after the adds committed: \(applied)")
            for run in 1...5 {
                let diff = try lab.ctl(["diff"])
                #expect(diff.status == 0 && diff.stdout == "in sync\n", "run \(run): \(diff)")
            }
            #expect(try lab.mustCtl(["status"]).contains("kernel: in sync\n"))
        }
    }

    /// Item 7: 60,000 elements in one command. argument-parser's handling of positional arguments
    /// made this quadratic (10,000 took 30 s of CPU in a debug build); linear, it takes seconds.
    @Test(arguments: ["iptables", "nftables"])
    func sixtyThousandSetElementsInOneCommand(backend: String) throws {
        try Lab.with(backend) { lab in
            try lab.mustCtl(["ipset", "create", "big", "hash:ip", "10.255.255.1"])
            let elements = (0..<60_000).map { "10.\($0 >> 16).\(($0 >> 8) & 255).\($0 & 255)" }
            let child = try ChildProcess.spawn(lab.command + ["ipset", "add", "big"] + elements)
            let deadline = ContinuousClock.now + .seconds(90)
            var status = child.poll()
            while status == nil && ContinuousClock.now < deadline { usleep(50_000); status = child.poll() }
            if status == nil { child.signal(SIGKILL); child.wait() }
            #expect(status == 0, "ipset add of 60,000 elements: \(status.map { "exit \($0)" } ?? "still running after 90 s")")
            let listed = try lab.mustCtl(["ipset", "list", "big"])
            #expect(listed.hasPrefix("big hash:ip ipv4 (60001 elements)\n"), "\(listed.prefix(100))")
            #expect(listed.contains("\n  10.0.234.95\n"))
            #expect(try lab.mustCtl(["diff"]) == "in sync\n")
            // The elements after the first few are handed over separately: check their order and the options around them.
            try lab.mustCtl(["ipset", "create", "-6", "six", "hash:ip", "fd00::3", "fd00::1", "--json", "fd00::2"])
            #expect(try lab.mustCtl(["ipset", "list", "six"]) == "six hash:ip ipv6 (3 elements)\n  fd00::3\n  fd00::1\n  fd00::2\n")
            let bad = try lab.ctl(["ipset", "add", "six", "fd00::4", "fd00::5", "nonsense", "fd00::6"])
            #expect(bad.status == 65 && bad.stderr == "docknfvctl: error: \"nonsense\" is not a valid ipv6 element of hash:ip set six\n", "\(bad)")
        }
    }

    /// Item 8: readers need no write access. On a read-only state directory (a read-only bind
    /// mount in a private mount namespace), diff, status, apply and --dry-run work; writers say why not.
    @Test(arguments: ["iptables", "nftables"])
    func aReadOnlyStateDirectoryServesReaders(backend: String) throws {
        try Lab.with(backend) { lab in
            try lab.mustCtl(["rule", "add", "--chain", "INPUT", "--", "-p", "udp", "--dport", "53", "-j", "ACCEPT"])
            try lab.mustCtl(["rule", "flush"]) // the kernel is now empty …
            try lab.mustCtl(["rule", "add", "--chain", "INPUT", "--", "-p", "udp", "--dport", "54", "-j", "ACCEPT"])
            let flush = backend == "iptables" ? "iptables-legacy -F INPUT" : "nft flush ruleset"
            let ctl = lab.command.map { "'\($0)'" }.joined(separator: " ")
            let script = """
                set -u
                mount --bind '\(lab.stateDir)' '\(lab.stateDir)' && mount -o remount,ro,bind '\(lab.stateDir)' || exit 99
                touch '\(lab.stateDir)/probe' 2>/dev/null && exit 98
                ip netns exec \(lab.ns.name) \(flush) || exit 97
                \(ctl) diff >/dev/null; echo "diff=$?"
                \(ctl) --dry-run apply >/dev/null; echo "dry-run=$?"
                \(ctl) apply >/dev/null; echo "apply=$?"
                \(ctl) diff; echo "diff=$?"
                \(ctl) status >/dev/null; echo "status=$?"
                \(ctl) rule add --chain INPUT -- -j ACCEPT 2>&1; echo "add=$?"
                """
            let result = try runCommand(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout == """
                diff=1
                dry-run=0
                apply=0
                in sync
                diff=0
                status=0
                docknfvctl: error: cannot create lock file \(lab.stateDir)/rules.lock: Read-only file system
                add=1

                """, "\(result)")
        }
    }

    /// Item 12: a temporary set of a killed run (x_tables only: nftables refills sets inside its
    /// batch) makes `diff` say so, and the next apply removes it.
    @Test func aKilledRunsTemporarySetIsNotInSync() throws {
        try Lab.with("iptables") { lab in
            try lab.mustCtl(["ipset", "create", "s", "hash:ip", "10.0.0.1"])
            try lab.ns.mustRun(["ipset", "create", "dnfv~tmp~5eed", "hash:ip"])
            let diff = try lab.ctl(["diff"])
            #expect(diff.status == 1 && diff.stdout == "ipv4/filter unexpected: set dnfv~tmp~5eed\n", "\(diff)")
            try lab.mustCtl(["apply"])
            #expect(try lab.ns.mustRun(["ipset", "list", "-n"]) == "s\n")
            #expect(try lab.mustCtl(["diff"]) == "in sync\n")
        }
    }

    /// Items 13 and 15: bad values get one line, exit 65 and no usage text; what the user typed is
    /// echoed at most in part; nothing is changed.
    @Test(arguments: ["iptables", "nftables"])
    func badValuesGetOneMessage(backend: String) throws {
        try Lab.with(backend) { lab in
            try lab.mustCtl(["rule", "add", "--chain", "INPUT", "--", "-j", "ACCEPT"])
            let before = try String(contentsOfFile: lab.stateDir + "/rules.json", encoding: .utf8)
            let huge = String(repeating: "a", count: 100_000)
            let cases: [([String], String)] = [
                (["rule", "add", "--position", "-1", "--chain", "INPUT", "--", "-j", "DROP"], "position -1 is outside chain INPUT (1 to 2)"),
                (["rule", "insert", "--chain", "INPUT", "--position", "-3", "--", "-j", "DROP"], "position -3 is outside chain INPUT (1 to 2)"),
                (["rule", "add", "--position", "999999", "--chain", "INPUT", "--", "-j", "DROP"], "position 999999 is outside chain INPUT (1 to 2)"),
                (["rule", "flush", "--chain", "../x"], "no chain \"../x\""),
                (["rule", "add", "--chain", "../x", "--", "-j", "DROP"], "--chain \"../x\": not a built-in chain of filter and not a valid chain name"),
                (["rule", "add", "--chain", "INPUT", "--", "-m", "comment", "--comment", "a${HOME", "-j", "DROP"], "unterminated ${"),
                (["rule", "add", "--table", "bogus", "--chain", "INPUT", "--", "-j", "DROP"], "--table \"bogus\": expected filter, nat, mangle or raw"),
                (["rule", "flush", "--table", "bogus"], "--table \"bogus\": expected filter, nat, mangle or raw"),
                (["chain", "create", "x", "--family", "ipv9"], "--family \"ipv9\": expected ipv4 or ipv6"),
                (["ipset", "create", "s", "hash:foo"], "set type \"hash:foo\": expected hash:net, hash:ip, hash:ip,port or hash:ip,mark"),
                (["ipset", "create", "dnfv~tmp~x", "hash:ip"], "set name \"dnfv~tmp~x\""),
                (["migrate", "--to", "pf"], "--to \"pf\": expected nftables or iptables"),
                (["rule", "add", "--chain", huge, "--", "-j", "DROP"], "not a built-in chain"),
                (["rule", "add", "--chain", "INPUT", "--", "-p", "tcp", "--dport", huge, "-j", "DROP"], "not a valid port"),
                (["ipset", "create", huge, "hash:ip"], "set name"),
            ]
            for (arguments, message) in cases {
                let result = try lab.ctl(arguments, environment: ProcessInfo.processInfo.environment.merging(["HOME": "/root"]) { $1 })
                let shown = arguments.map { $0.prefix(40) }.joined(separator: " ")
                #expect(result.status == 65, "\(shown): \(result.status) \(result.stderr.prefix(300))")
                #expect(result.stderr.hasPrefix("docknfvctl: error: ") && result.stderr.contains(message), "\(shown): \(result.stderr.prefix(300))")
                #expect(!result.stderr.contains("Usage:") && result.stderr.split(separator: "\n").count == 1, "\(shown): \(result.stderr.prefix(300))")
                #expect(result.stderr.utf8.count < 1_000, "\(shown): \(result.stderr.utf8.count) bytes of message")
            }
            #expect(try String(contentsOfFile: lab.stateDir + "/rules.json", encoding: .utf8) == before)
            // Argument syntax errors keep argument-parser's 64 and the command's own usage.
            let syntax = try lab.ctl(["rule", "add", "-4", "-6", "--chain", "INPUT", "--", "-j", "DROP"])
            #expect(syntax.status == 64 && syntax.stderr.contains("Usage: docknfvctl rule add"), "\(syntax)")
        }
    }

    /// Item 13: DOCKNFV_STATE_DIR empty, relative or a file is refused with a message naming it.
    @Test func badStateDirectoriesAreRefused() throws {
        try withNamespaces(["hardsd"]) { ns in
            for (value, message) in [("", "the state directory path is empty"), ("relative/dir", "state directory \"relative/dir\" is not an absolute path"),
                                     ("/etc/passwd", "state directory /etc/passwd is not a directory")] {
                var environment = ProcessInfo.processInfo.environment
                environment["DOCKNFV_STATE_DIR"] = value
                let result = try runCommand([TestEnv.binary("docknfvctl"), "--netns", ns[0].path, "rule", "add", "--chain", "INPUT", "--", "-j", "ACCEPT"],
                                            environment: environment)
                #expect(result.status != 0 && result.stderr == "docknfvctl: error: \(message)\n", "\(value): \(result)")
            }
            #expect(!FileManager.default.fileExists(atPath: "relative"))
        }
    }
}
