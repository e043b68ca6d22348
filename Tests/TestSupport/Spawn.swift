import Foundation

/// A child process started with a clean signal state. Tests run on Dispatch worker threads, which
/// block most signals, and Foundation's `Process` passes that mask on: a daemon started that way
/// ignores SIGTERM forever. Everything tests start goes through here instead.
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// Starts `arguments` (looked up in PATH) with stdin from `/dev/null` or `stdin`, and stdout /
    /// stderr to the given descriptors (default: /dev/null).
    public static func spawn(_ arguments: [String], environment: [String: String]? = nil,
                             stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, target) in [(stdin, Int32(0)), (stdout, 1), (stderr, 2)] {
            if let fd { posix_spawn_file_actions_adddup2(&actions, fd, target) }
            else { posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0) }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in 1..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, Int32(signal)) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, arguments[0], &actions, &attributes, &argv, &envp)
        guard rc == 0 else { throw TestFailure("cannot start \(arguments[0]): \(String(cString: strerror(rc)))") }
        return ChildProcess(pid: pid)
    }

    /// Waits for the child; returns its exit status, or 128 + signal when killed.
    @discardableResult
    public func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Self.decode(status)
    }

    /// The exit status if the child has ended, nil while it runs.
    public func poll() -> Int32? {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid ? Self.decode(status) : nil
    }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// Runs a command to completion and captures its output (tests only: product code never starts
/// subprocesses). Output is read until the command itself exits; a daemon it left behind holding
/// the pipe cannot make the caller hang.
@discardableResult
public func runCommand(_ arguments: [String], environment: [String: String]? = nil, input: String? = nil) throws -> CommandResult {
    var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0], inPipe: [Int32] = [0, 0]
    guard pipe(&outPipe) == 0, pipe(&errPipe) == 0, pipe(&inPipe) == 0 else { throw TestFailure("pipe failed") }
    for fd in [outPipe[0], errPipe[0], inPipe[1]] { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    let child: ChildProcess
    do {
        child = try ChildProcess.spawn(arguments, environment: environment, stdin: inPipe[0], stdout: outPipe[1], stderr: errPipe[1])
    } catch {
        [outPipe[0], outPipe[1], errPipe[0], errPipe[1], inPipe[0], inPipe[1]].forEach { close($0) }
        throw error
    }
    close(outPipe[1]); close(errPipe[1]); close(inPipe[0])
    if let input { _ = input.utf8CString.withUnsafeBufferPointer { write(inPipe[1], $0.baseAddress, $0.count - 1) } }
    close(inPipe[1])

    var out = [UInt8](), err = [UInt8]()
    var open: [Int32: Bool] = [outPipe[0]: true, errPipe[0]: true]
    var status: Int32?
    var buffer = [UInt8](repeating: 0, count: 65536)
    func drain(_ fd: Int32) -> Bool { // false at EOF
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { return false }
        if fd == outPipe[0] { out += buffer[..<count] } else { err += buffer[..<count] }
        return true
    }
    while open.values.contains(true) {
        var fds = open.filter(\.value).keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let ready = poll(&fds, nfds_t(fds.count), status == nil ? 100 : 0)
        if ready > 0 {
            for entry in fds where entry.revents != 0 { if !drain(entry.fd) { open[entry.fd] = false } }
        } else if status != nil {
            break // the command has exited and nothing more is pending
        }
        if status == nil { status = child.poll() }
    }
    if status == nil { status = child.wait() }
    close(outPipe[0]); close(errPipe[0])
    return CommandResult(status: status!, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
}
