import Foundation
import Testing
import StateFiles
import TestSupport

// StateFiles has no test target of its own; its tests live here, beside its other user.
// Serialized: one test changes the process umask, others act as user nobody in shared dirs.
@Suite("State files: atomic writes, state directory, lock file", .serialized, .enabled(if: TestEnv.isRoot))
struct StateFilesTests {
    static let nobody: uid_t = 65534

    /// A fresh directory under /tmp with exactly `mode`, removed afterwards.
    func withDir<T>(mode: mode_t = 0o700, _ body: (String) throws -> T) throws -> T {
        let dir = "/tmp/dnfvh1-sf-\(UUID().uuidString.prefix(8))"
        guard mkdir(dir, 0o700) == 0, chmod(dir, mode) == 0 else { throw TestFailure("cannot make \(dir)") }
        defer { _ = try? runCommand(["rm", "-rf", dir]) }
        return try body(dir)
    }

    /// Runs a shell snippet as user nobody.
    @discardableResult
    func asNobody(_ script: String) throws -> CommandResult {
        try runCommand(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script])
    }

    func owner(_ path: String) -> (uid: uid_t, mode: mode_t)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (info.st_uid, info.st_mode & 0o7777)
    }

    func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    func deadPid() throws -> pid_t {
        let child = try ChildProcess.spawn(["true"])
        child.wait()
        return child.pid
    }

    // MARK: AtomicFile

    /// Issue 8 item 3: nobody pre-creates the temporary name root used to pick (`.NAME.tmp.PID`,
    /// opened without O_EXCL): root's write then produced a file owned by nobody, who could edit
    /// it afterwards. Now the temporary is always a fresh file of root's.
    @Test func plantedTemporaryDoesNotTakeOverTheFile() throws {
        try withDir(mode: 0o777) { dir in
            let file = dir + "/rules.json"
            let planted = "\(dir)/.rules.json.tmp.\(getpid())"
            try #require(try asNobody("umask 0; echo planted > \(planted)").succeeded)

            try AtomicFile.write(file, string: "{\"root\": true}\n", mode: 0o600)

            #expect(owner(file)?.uid == 0)
            #expect(owner(file)?.mode == 0o600)
            #expect(text(file) == "{\"root\": true}\n")
            #expect(try !asNobody("echo '-s 6.6.6.6 -j ACCEPT' >> \(file)").succeeded)
            #expect(text(file) == "{\"root\": true}\n")
            // nobody's own file is left alone (not ours to remove).
            #expect(owner(planted)?.uid == Self.nobody && text(planted) == "planted\n")
        }
    }

    /// A symlink planted at the temporary name or at the file's own name is never written through.
    @Test func plantedSymlinksAreNotFollowed() throws {
        try withDir(mode: 0o777) { dir in
            let victim = dir + "/victim"
            try AtomicFile.write(victim, string: "precious\n", mode: 0o600)
            try #require(try asNobody("ln -s \(victim) \(dir)/.push.conf.tmp.\(getpid()) && ln -s \(victim) \(dir)/push.conf").succeeded)

            try AtomicFile.write(dir + "/push.conf", string: "push \"route 10.0.0.0 255.0.0.0\"\n")

            #expect(text(victim) == "precious\n")
            #expect(owner(dir + "/push.conf")?.uid == 0)
            #expect(owner(dir + "/push.conf")?.mode == 0o644)
            var info = stat()
            #expect(lstat(dir + "/push.conf", &info) == 0 && info.st_mode & S_IFMT == S_IFREG)
        }
    }

    @Test func modeIsExactWhateverTheUmask() throws {
        try withDir { dir in
            let old = umask(0o077)
            defer { umask(old) }
            try AtomicFile.write(dir + "/push.conf", string: "x\n", mode: 0o644)
            #expect(owner(dir + "/push.conf")?.mode == 0o644)
        }
    }

    /// Issue 8 item 12: a killed run's temporaries are removed on the next write of the same name —
    /// only files of docknfv's own pattern, owned by us, whose writer is gone.
    @Test func leftoverTemporariesOfDeadWritersAreCleaned() throws {
        try withDir { dir in
            let dead = try deadPid()
            let sleeper = try ChildProcess.spawn(["sleep", "30"])
            defer { sleeper.signal(SIGKILL); sleeper.wait() }
            let removed = [".rules.json.tmp.\(dead)", ".rules.json.tmp.\(dead).00000000deadbeef"]
            let kept = [".rules.json.tmp.\(sleeper.pid)", ".rules.json.tmp.\(dead).x", ".rules.json.tmp.abc",
                        ".other.json.tmp.\(dead)", "rules.json.tmp.\(dead)", ".rules.json.tmp.\(dead).00000000deadbeef0"]
            for name in removed + kept { try "old\n".write(toFile: dir + "/" + name, atomically: false, encoding: .utf8) }
            let foreign = ".rules.json.tmp.\(dead).0123456789abcdef"
            try "old\n".write(toFile: dir + "/" + foreign, atomically: false, encoding: .utf8)
            #expect(chown(dir + "/" + foreign, Self.nobody, gid_t(Self.nobody)) == 0)

            try AtomicFile.write(dir + "/rules.json", string: "{}\n", mode: 0o600)

            let left = Set(try FileManager.default.contentsOfDirectory(atPath: dir))
            #expect(left == Set(kept + [foreign, "rules.json"]))
        }
    }

    @Test func writeFailureLeavesNoTemporary() throws {
        try withDir { dir in
            try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: false)
            #expect(throws: AtomicFile.Error.self) { try AtomicFile.write(dir + "/sub", string: "x") } // rename over a directory
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["sub"])
        }
    }

    // MARK: StateDirectory

    @Test(arguments: [("", "the state directory path is empty"),
                      ("var/lib/docknfv", "state directory \"var/lib/docknfv\" is not an absolute path"),
                      ("./state", "state directory \"./state\" is not an absolute path")])
    func badPathsAreRefusedClearly(path: String, message: String) {
        for check in [StateDirectory.prepare, { _ = try StateDirectory.checkReadable($0) }] as [(String) throws -> Void] {
            #expect { try check(path) } throws: { String(describing: $0) == message }
        }
    }

    @Test func prepareCreatesTheDirectory0700WhateverTheUmask() throws {
        try withDir { dir in
            let state = dir + "/lib/docknfv"
            #expect(try StateDirectory.checkReadable(state) == false)
            #expect(!FileManager.default.fileExists(atPath: state))
            let old = umask(0o077)
            defer { umask(old) }
            try StateDirectory.prepare(state)
            #expect(owner(dir + "/lib")?.mode == 0o755)
            #expect(owner(state)?.mode == 0o700)
            #expect(try StateDirectory.checkReadable(state))
            try StateDirectory.prepare(state) // again: nothing to do
        }
    }

    @Test func aFileIsNotADirectory() throws {
        try withDir { dir in
            try "x".write(toFile: dir + "/file", atomically: false, encoding: .utf8)
            #expect(throws: StateDirectory.Error.notADirectory(path: dir + "/file", component: dir + "/file")) {
                try StateDirectory.prepare(dir + "/file")
            }
            #expect { try StateDirectory.checkReadable(dir + "/file/state") } throws: {
                String(describing: $0) == "state directory \(dir)/file/state: \(dir)/file is not a directory"
            }
        }
    }

    @Test(arguments: [mode_t(0o777), 0o770, 0o1777, 0o757])
    func aStateDirectoryOthersCanWriteIsRefused(mode: mode_t) throws {
        try withDir(mode: mode) { dir in
            for check in [StateDirectory.prepare, { _ = try StateDirectory.checkReadable($0) }] as [(String) throws -> Void] {
                #expect(throws: StateDirectory.Error.writableByOthers(path: dir, component: dir, mode: S_IFDIR | mode)) { try check(dir) }
            }
            #expect { try StateDirectory.prepare(dir) } throws: { String(describing: $0).contains("is writable by group or others") }
        }
    }

    @Test func parentsMayBeWritableByOthersOnlyWhenSticky() throws {
        try withDir(mode: 0o777) { open in
            #expect(throws: StateDirectory.Error.writableByOthers(path: open + "/state", component: open, mode: S_IFDIR | 0o777)) {
                try StateDirectory.prepare(open + "/state")
            }
            #expect(!FileManager.default.fileExists(atPath: open + "/state"))
        }
        try withDir(mode: 0o1777) { sticky in
            try StateDirectory.prepare(sticky + "/state")
            #expect(owner(sticky + "/state")?.mode == 0o700)
        }
    }

    @Test func foreignOwnersAreRefused() throws {
        try withDir { dir in
            try StateDirectory.prepare(dir + "/state")
            #expect(chown(dir + "/state", Self.nobody, gid_t(Self.nobody)) == 0)
            #expect(throws: StateDirectory.Error.foreignOwner(path: dir + "/state", component: dir + "/state", uid: Self.nobody)) {
                try StateDirectory.checkReadable(dir + "/state")
            }
        }
    }

    @Test func symlinksAreResolvedAndTheirTargetsChecked() throws {
        try withDir(mode: 0o1777) { dir in
            try StateDirectory.prepare(dir + "/real")
            #expect(symlink(dir + "/real", dir + "/link") == 0)
            #expect(symlink("real", dir + "/relative") == 0)
            #expect(try StateDirectory.checkReadable(dir + "/link"))
            #expect(try StateDirectory.checkReadable(dir + "/relative"))
            // A link that nobody planted in a sticky directory is not trusted.
            try #require(try asNobody("ln -s \(dir)/real \(dir)/planted").succeeded)
            #expect(throws: StateDirectory.Error.foreignOwner(path: dir + "/planted", component: dir + "/planted", uid: Self.nobody)) {
                try StateDirectory.prepare(dir + "/planted")
            }
            // A link to a directory others can write to is judged by its target.
            try withDir(mode: 0o777) { open in
                #expect(symlink(open, dir + "/open") == 0)
                #expect(throws: StateDirectory.Error.self) { try StateDirectory.checkReadable(dir + "/open") }
            }
            #expect(symlink(dir + "/loop", dir + "/loop") == 0)
            #expect(throws: StateDirectory.Error.tooManySymlinks(path: dir + "/loop")) { try StateDirectory.checkReadable(dir + "/loop") }
        }
    }

    // MARK: LockFile

    @Test func lockIsExclusiveBoundedAndReleasedOnDeinit() throws {
        try withDir { dir in
            let path = dir + "/rules.lock"
            do {
                let held = try LockFile.acquire(path, timeout: 1)
                #expect(owner(path)?.mode == 0o600)
                let start = ContinuousClock.now
                #expect { try LockFile.acquire(path, timeout: 0.2) } throws: { ($0 as? LockFile.Error)?.isTimeout == true }
                #expect(ContinuousClock.now - start < .seconds(2))
                #expect { try LockFile.acquire(path, timeout: 0) } throws: {
                    String(describing: $0) == "\(path) is locked by another docknfv process (waited 0.0 s); try again later"
                }
                withExtendedLifetime(held) {}
            }
            // `held` is gone: its deinit unlocked.
            let again = try LockFile.acquire(path, timeout: 0)
            again.release()
            _ = try LockFile.acquire(path, timeout: 0)
        }
    }

    @Test func sharedLocksCoexist() throws {
        try withDir { dir in
            let a = try LockFile.acquire(dir + "/rules.lock", timeout: 0, kind: .shared)
            let b = try LockFile.acquire(dir + "/rules.lock", timeout: 0, kind: .shared)
            #expect(throws: LockFile.Error.timeout(path: dir + "/rules.lock", seconds: 0)) { try LockFile.acquire(dir + "/rules.lock", timeout: 0) }
            withExtendedLifetime((a, b)) {}
        }
    }

    /// A rules.lock symlink planted by nobody is refused; its target is neither created nor opened.
    @Test func symlinkedLockIsRefused() throws {
        try withDir(mode: 0o777) { dir in
            try #require(try asNobody("ln -s \(dir)/created-by-root \(dir)/rules.lock").succeeded)
            #expect(throws: LockFile.Error.symlink(path: dir + "/rules.lock")) { try LockFile.acquire(dir + "/rules.lock", timeout: 0) }
            #expect(!FileManager.default.fileExists(atPath: dir + "/created-by-root"))
        }
    }

    @Test func oddLockFilesAreRefused() throws {
        try withDir { dir in
            #expect(mkfifo(dir + "/fifo.lock", 0o600) == 0)
            #expect(throws: LockFile.Error.notARegularFile(path: dir + "/fifo.lock")) { try LockFile.acquire(dir + "/fifo.lock", timeout: 0) }
            try "".write(toFile: dir + "/nobody.lock", atomically: false, encoding: .utf8)
            #expect(chown(dir + "/nobody.lock", Self.nobody, gid_t(Self.nobody)) == 0)
            #expect(throws: LockFile.Error.foreignOwner(path: dir + "/nobody.lock", uid: Self.nobody)) {
                try LockFile.acquire(dir + "/nobody.lock", timeout: 0)
            }
        }
    }

    /// Issue 8 item 8: on a read-only file system the lock cannot be made; the error says so
    /// distinctly, and the directory still passes the reader's check.
    @Test func readOnlyStateDirectory() throws {
        try withDir { dir in
            let state = dir + "/state"
            try StateDirectory.prepare(state)
            try mustRun(["mount", "-t", "tmpfs", "-o", "ro,mode=0700,size=64k", "dnfvh1-ro", state])
            defer { _ = try? runCommand(["umount", state]) }
            #expect(try StateDirectory.checkReadable(state))
            #expect(throws: LockFile.Error.readOnly(path: state + "/rules.lock", errno: EROFS)) {
                try LockFile.acquire(state + "/rules.lock", timeout: 0)
            }
            #expect(try AtomicFile.read(state + "/rules.json") == nil)
        }
    }
}
