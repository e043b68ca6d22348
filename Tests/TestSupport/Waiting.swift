import Foundation

/// Polls `condition` until it holds or `timeout` seconds pass; true when it held. Tests wait for
/// something they can observe (a file, a line, a process state, a kernel object) this way instead
/// of sleeping for a guessed time.
public func waitUntil(timeout: Double = 10, interval: Double = 0.01, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(UInt32(interval * 1_000_000))
    }
}

/// The read end of a pipe a child writes to, read line by line with a deadline.
public final class PipeLines {
    public let readEnd: Int32, writeEnd: Int32
    private var pending: [UInt8] = []
    /// Every line read so far.
    public private(set) var lines: [String] = []

    public init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestFailure("pipe: errno \(errno)") }
        readEnd = fds[0]
        writeEnd = fds[1]
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
    }

    deinit {
        close(readEnd)
        closeWriteEnd()
    }

    private var writeEndOpen = true
    /// Call once the child has been started with `writeEnd`, so that its exit means end of file.
    public func closeWriteEnd() {
        if writeEndOpen { close(writeEnd); writeEndOpen = false }
    }

    /// Reads until a line containing `text` arrives; nil at end of file or after `timeout` seconds.
    public func waitForLine(containing text: String, timeout: Double = 10) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        var scanned = 0
        while true {
            if let line = lines[scanned...].first(where: { $0.contains(text) }) { return line }
            scanned = lines.count
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var pfd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(remaining * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = read(readEnd, &buffer, buffer.count)
            guard count > 0 else { return nil }
            pending += buffer[..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
        }
    }
}

/// The system call a thread is blocked in (first field of /proc/PID/task/TID/syscall), per thread
/// of `pid`; empty when the process is gone.
public func blockingSyscalls(of pid: pid_t) -> [Int] {
    let taskDir = "/proc/\(pid)/task"
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: taskDir) else { return [] }
    return tasks.compactMap { tid in
        guard let text = try? String(contentsOfFile: "\(taskDir)/\(tid)/syscall", encoding: .utf8) else { return nil }
        return text.split(separator: " ").first.flatMap { Int($0) }
    }
}

/// The number of `rt_sigtimedwait` on this architecture.
public var rtSigtimedwaitSyscall: Int {
    #if arch(x86_64)
    return 128
    #elseif arch(arm64)
    return 137
    #else
    return -1
    #endif
}
