#if canImport(Glibc)
import Glibc
#endif

/// How to tell a running OpenVPN server to re-read its configuration.
public enum OpenVPNControl: Sendable, Equatable, CustomStringConvertible {
    /// The management interface (`--management unix:PATH` or `--management HOST PORT`).
    case managementUnix(path: String)
    case managementTCP(host: String, port: UInt16)
    /// SIGHUP to the pid in OpenVPN's `--writepid` file.
    case pidFile(path: String)

    /// Parses `unix:PATH` or `HOST:PORT` (`[v6]:PORT` for IPv6).
    public static func management(_ text: String) -> OpenVPNControl? {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            return path.isEmpty ? nil : .managementUnix(path: path)
        }
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return .managementTCP(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .managementUnix(let path): return "management unix:\(path)"
        case .managementTCP(let host, let port): return "management \(host):\(port)"
        case .pidFile(let path): return "pid file \(path)"
        }
    }
}

public enum NotifyError: Error, Equatable, CustomStringConvertible {
    case failed(target: String, reason: String)
    public var description: String {
        switch self {
        case .failed(let target, let reason): return "cannot tell OpenVPN (\(target)): \(reason)"
        }
    }
}

/// Sends SIGHUP to OpenVPN — the signal that makes it re-read its configuration (and so the push
/// include file). SIGUSR1 would restart without re-reading.
public enum OpenVPNNotifier {
    public static func reload(_ control: OpenVPNControl, timeoutSeconds: Int = 3) throws(NotifyError) {
        switch control {
        case .pidFile(let path):
            try signalPidFile(path)
        case .managementUnix, .managementTCP:
            try management(control, timeoutSeconds: timeoutSeconds)
        }
    }

    static func signalPidFile(_ path: String) throws(NotifyError) {
        let target = "pid file \(path)"
        guard let file = fopen(path, "r") else { throw .failed(target: target, reason: String(cString: strerror(errno))) }
        var buffer = [CChar](repeating: 0, count: 32)
        let line = fgets(&buffer, 32, file)
        fclose(file)
        let text = line == nil ? "" : String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let trimmed = text.filter { !$0.isWhitespace }
        guard let pid = Int32(trimmed), pid > 1 else {
            throw .failed(target: target, reason: trimmed.isEmpty ? "no pid in the file"
                          : "\"\(trimmed.prefix(20))\" is not the process id of a daemon (a number above 1)")
        }
        guard let program = program(of: pid) else {
            throw .failed(target: target, reason: "pid \(pid) is not running (stale pid file?)")
        }
        guard program == "openvpn" else {
            throw .failed(target: target, reason: "pid \(pid) is \(program), not openvpn; not signalling it")
        }
        guard kill(pid, SIGHUP) == 0 else { throw .failed(target: target, reason: "kill \(pid): \(String(cString: strerror(errno)))") }
    }

    /// The program a pid runs: the name of /proc/PID/exe (which the process cannot rename), or
    /// /proc/PID/comm when exe is unreadable; nil when the process does not exist.
    static func program(of pid: pid_t) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        if count > 0 {
            var path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) } // replaced by an upgrade
            return String(path.split(separator: "/").last ?? "")
        }
        guard let file = fopen("/proc/\(pid)/comm", "r") else { return nil }
        defer { fclose(file) }
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func management(_ control: OpenVPNControl, timeoutSeconds: Int) throws(NotifyError) {
        let target = control.description
        let fd: Int32
        do { fd = try connect(control, timeoutSeconds: timeoutSeconds) } catch { throw .failed(target: target, reason: error.text) }
        defer { close(fd) }
        var reader = LineReader(fd: fd)
        // The server greets with ">INFO:OpenVPN Management Interface …" (or asks for a password).
        guard let greeting = reader.line() else { throw .failed(target: target, reason: "no greeting") }
        if greeting.hasPrefix("ENTER PASSWORD") { throw .failed(target: target, reason: "the management interface wants a password") }
        let command = Array("signal SIGHUP\n".utf8)
        guard write(fd, command, command.count) == command.count else { throw .failed(target: target, reason: "write failed") }
        while let line = reader.line() {
            if line.hasPrefix("SUCCESS:") {
                let quit = Array("quit\n".utf8)
                _ = write(fd, quit, quit.count)
                return
            }
            if line.hasPrefix("ERROR:") { throw .failed(target: target, reason: line) }
            // Other lines are asynchronous notifications (">LOG:", ">STATE:"…): skip them.
        }
        throw .failed(target: target, reason: "no answer to 'signal SIGHUP'")
    }

    struct SocketError: Error { var text: String }

    static func connect(_ control: OpenVPNControl, timeoutSeconds: Int) throws -> Int32 {
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        func configured(_ fd: Int32) -> Int32 {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        switch control {
        case .managementUnix(let path):
            let fd = configured(socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
            guard fd >= 0 else { throw SocketError(text: "socket: \(String(cString: strerror(errno)))") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); throw SocketError(text: "path too long") }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in bytes.enumerated() { raw[index] = byte }
            }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { let e = errno; close(fd); throw SocketError(text: "connect: \(String(cString: strerror(e)))") }
            return fd
        case .managementTCP(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, String(port), &hints, &result)
            guard rc == 0, let first = result else { throw SocketError(text: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
            defer { freeaddrinfo(result) }
            let fd = configured(socket(first.pointee.ai_family, first.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), first.pointee.ai_protocol))
            guard fd >= 0 else { throw SocketError(text: "socket: \(String(cString: strerror(errno)))") }
            guard Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
                let e = errno; close(fd); throw SocketError(text: "connect: \(String(cString: strerror(e)))")
            }
            return fd
        case .pidFile:
            throw SocketError(text: "not a socket")
        }
    }
}

extension Error {
    var text: String { (self as? OpenVPNNotifier.SocketError)?.text ?? String(describing: self) }
}

/// Reads CRLF/LF-terminated lines from a socket.
struct LineReader {
    let fd: Int32
    var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    mutating func line() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self).trimmingTrailingCR()
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 1024)
            let count = read(fd, &chunk, chunk.count)
            if count <= 0 { return nil }
            buffer.append(contentsOf: chunk[..<count])
        }
    }
}

extension String {
    func trimmingTrailingCR() -> String { hasSuffix("\r") ? String(dropLast()) : self }
}
