import CDockNFVShim
#if canImport(Glibc)
import Glibc
#endif

/// Runs the container's command as docknfv-init's child: forwards signals, reaps zombies
/// (as PID 1, or as a child subreaper otherwise) and reports the child's exit status.
///
/// All handled signals are blocked in every thread (call `blockSignals()` first thing in
/// `main`, before any thread exists) and collected synchronously with `sigtimedwait`, so no
/// async signal handler is involved.
public enum Supervisor {
    /// Signals passed on to the child.
    public static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGWINCH]

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case spawn(command: String, errno: Int32)
        public var description: String {
            switch self {
            case .spawn(let command, let errno):
                let reason = errno == ENOENT ? "command not found" : String(cString: strerror(errno))
                return "cannot start \(command): \(reason) (errno \(errno))"
            }
        }
    }

    /// Blocks the forwarded signals and SIGCHLD in the calling thread (inherited by later threads).
    public static func blockSignals() {
        var set = handledSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits up to `seconds` for a forwarded signal; returns it, or nil on timeout.
    /// Lets start-up waits be interrupted by `docker stop` (SIGTERM).
    public static func waitForSignal(seconds: Double) -> Int32? {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in forwarded { sigaddset(&set, signal) }
        var timeout = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        let received = sigtimedwait(&set, nil, &timeout)
        return received > 0 ? received : nil
    }

    /// Starts `command` and supervises it until it exits. Returns the status to exit with:
    /// the child's exit code, or 128 + signal number when a signal killed it.
    public static func run(_ command: [String], log: (String) -> Void) throws -> Int32 {
        let isInit = getpid() == 1
        if !isInit && dnfv_set_child_subreaper() != 0 {
            log("warning: cannot become a child subreaper (errno \(errno)); orphans will not be reaped here")
        }
        let child = try spawn(command)
        log("started \(command.joined(separator: " ")) as pid \(child)")
        var set = handledSet()
        while true {
            var info = siginfo_t()
            let signal = sigwaitinfo(&set, &info)
            if signal < 0 { continue } // EINTR
            if signal == SIGCHLD {
                if let status = reap(child: child) {
                    return exitCode(status, log: log)
                }
            } else if kill(child, signal) != 0 && errno != ESRCH {
                log("warning: forwarding signal \(signal) to pid \(child) failed (errno \(errno))")
            }
        }
    }

    /// Reaps every exited child; returns the supervised child's wait status once it is among them.
    static func reap(child: pid_t) -> Int32? {
        var childStatus: Int32?
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            if pid == child { childStatus = status }
        }
        return childStatus
    }

    static func exitCode(_ status: Int32, log: (String) -> Void) -> Int32 {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros; their encoding is fixed by the kernel ABI.
        let termSignal = status & 0x7f
        if termSignal == 0 {
            let code = (status >> 8) & 0xff
            log("child exited with status \(code)")
            return code
        }
        log("child killed by signal \(termSignal)")
        return 128 + termSignal
    }

    static func handledSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in forwarded + [SIGCHLD] { sigaddset(&set, signal) }
        return set
    }

    /// posix_spawnp with an empty signal mask and default dispositions, so the child does not
    /// inherit the blocked signals. (Starting the container's command is this program's job.)
    static func spawn(_ command: [String]) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = handledSet()
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, command[0], nil, &attributes, &argv, environ)
        if rc != 0 { throw Error.spawn(command: command[0], errno: rc) }
        return pid
    }
}
