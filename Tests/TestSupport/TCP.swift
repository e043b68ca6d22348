import Foundation
import NetNS

/// Real TCP traffic between namespaces, made in process with POSIX sockets.
public enum TCPProbe {
    /// Starts a listener in `namespace` on `address:port` that accepts one connection,
    /// reads a line and answers it back. Returns once the socket is listening. `peer`, when given,
    /// learns the source address the connection arrived from (after NAT on the way).
    public static func startEchoServer(in namespace: TestNamespace, address: String, port: UInt16, peer: PeerAddress? = nil) throws -> Thread {
        let ready = DispatchSemaphore(value: 0)
        let failure = ErrorBox()
        let thread = Thread {
            do {
                try NetworkNamespace.run(path: namespace.path) {
                    let fd = try makeSocket(address)
                    var listening = true
                    defer { if listening { close(fd) } }
                    var one: Int32 = 1
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                    // A server of an earlier probe on this port may still be winding down (its
                    // freeing connection came late under load): wait for the port, bounded.
                    let deadline = ContinuousClock.now + .seconds(3)
                    try withSockaddr(address, port) { sa, len in
                        while bind(fd, sa, len) != 0 {
                            guard errno == EADDRINUSE, ContinuousClock.now < deadline else { throw TestFailure("bind \(address):\(port): errno \(errno)") }
                            usleep(20_000)
                        }
                    }
                    guard listen(fd, 4) == 0 else { throw TestFailure("listen: errno \(errno)") }
                    ready.signal()
                    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&pfd, 1, 15_000) == 1 else { return }
                    var from = sockaddr_storage()
                    var fromLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let conn = withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &fromLength) }
                    }
                    // The port is free again before the answer goes out: a caller that got its
                    // echo can listen on the same port at once.
                    close(fd)
                    listening = false
                    guard conn >= 0 else { return }
                    peer?.record(from, fromLength)
                    defer { close(conn) }
                    var buffer = [UInt8](repeating: 0, count: 256)
                    let count = read(conn, &buffer, buffer.count)
                    if count > 0 { _ = write(conn, buffer, count) }
                }
            } catch {
                failure.error = error
                ready.signal()
            }
        }
        thread.start()
        ready.wait()
        if let error = failure.error { throw error }
        return thread
    }

    /// Connects from `namespace` to `address:port`, sends a line and expects it echoed.
    /// Returns false on refusal, timeout or a wrong answer.
    public static func echo(from namespace: TestNamespace, to address: String, port: UInt16, timeoutMs: Int32 = 2000) throws -> Bool {
        try NetworkNamespace.run(path: namespace.path) {
            let fd = try makeSocket(address)
            defer { close(fd) }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            let rc = try withSockaddr(address, port) { sa, len in connect(fd, sa, len) }
            if rc != 0 && errno != EINPROGRESS { return false }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&pfd, 1, timeoutMs) == 1 else { return false }
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
            guard soError == 0 else { return false }
            _ = fcntl(fd, F_SETFL, flags)
            let message = Array("docknfv-probe\n".utf8)
            guard write(fd, message, message.count) == message.count else { return false }
            var readable = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&readable, 1, timeoutMs) == 1 else { return false }
            var buffer = [UInt8](repeating: 0, count: 64)
            let count = read(fd, &buffer, buffer.count)
            return count == message.count && Array(buffer[..<count]) == message
        }
    }

    static func makeSocket(_ address: String) throws -> Int32 {
        let fd = socket(address.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        return fd
    }

    static func withSockaddr<T>(_ address: String, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) throws -> T {
        if address.contains(":") {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, address, &sa.sin6_addr) == 1 else { throw TestFailure("bad address \(address)") }
            return try withUnsafePointer(to: &sa) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &sa.sin_addr) == 1 else { throw TestFailure("bad address \(address)") }
        return try withUnsafePointer(to: &sa) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// `@unchecked Sendable`: written by the server thread before it signals, read after the wait.
private final class ErrorBox: @unchecked Sendable { var error: (any Error)? }

/// The numeric source address an echo server's client connected from.
/// `@unchecked Sendable`: the one mutable field is guarded by the lock.
public final class PeerAddress: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    public init() {}

    /// nil until a connection was accepted.
    public var address: String? { lock.withLock { value } }

    func record(_ storage: sockaddr_storage, _ length: socklen_t) {
        var storage = storage
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getnameinfo($0, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) }
        }
        let text = rc == 0 ? String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "getnameinfo failed: \(rc)"
        lock.withLock { value = text }
    }
}
