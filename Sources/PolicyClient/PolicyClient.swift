import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Policy
#if canImport(Glibc)
import Glibc
#endif

/// Polls a Cloud Foundry–compatible Policy Server's internal API over mutual TLS.
///
/// TLS 1.2 with TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 offered (the reference server accepts only
/// that suite), TLS 1.3 when the server offers it; the server's certificate must chain to the CA
/// and name the host in the URL (or its IP address); our certificate is sent on request. The
/// certificate files are read again when they change on disk.
public final class PolicyClient: @unchecked Sendable { // mutable TLS state guarded by `lock`
    public struct Files: Sendable, Equatable {
        public var caCert: String, clientCert: String, clientKey: String
        public init(caCert: String, clientCert: String, clientKey: String) { self.caCert = caCert; self.clientCert = clientCert; self.clientKey = clientKey }
    }

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case url(String)
        case tlsFiles(String)
        case connect(String)
        case http(status: Int)
        case decode(PolicyDecodeError)
        case timeout(Double)

        public var description: String {
            switch self {
            case .url(let text): return "policy server URL: \(text)"
            case .tlsFiles(let text): return "TLS material: \(text)"
            case .connect(let text): return "cannot reach the policy server: \(text)"
            case .http(let status): return "the policy server answered HTTP \(status)"
            case .decode(let error): return "the policy server's answer is unusable: \(error)"
            case .timeout(let seconds): return "the policy server did not answer within \(seconds) s"
            }
        }
    }

    let host: String
    let port: Int
    let basePath: String
    let files: Files
    let group: EventLoopGroup
    /// Decodes the answers; it re-reads only what changed since the last one.
    public let decoder = PolicyDecoder()
    public var connectTimeout: Double = 5
    public var requestTimeout: Double = 15
    private var lock = pthread_mutex_t()
    private var context: NIOSSLContext?
    private var stamp: [Int64] = []

    public init(url: String, files: Files, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        guard url.hasPrefix("https://") else { throw Failure.url("\(url): must start with https://") }
        var rest = Substring(url.dropFirst("https://".count))
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        basePath = String(rest[slash...]).trimmingSuffix("/")
        rest = authority
        var hostPart = Substring(rest), portPart: Substring?
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { // [IPv6]:port
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() }
        } else if let colon = rest.lastIndex(of: ":") {
            hostPart = rest[..<colon]; portPart = rest[rest.index(after: colon)...]
        }
        guard !hostPart.isEmpty else { throw Failure.url("\(url): no host") }
        host = String(hostPart)
        if let portPart {
            guard let value = Int(portPart), (1...65535).contains(value) else { throw Failure.url("\(url): bad port") }
            port = value
        } else { port = 443 }
        self.files = files
        self.group = group
        pthread_mutex_init(&lock, nil)
        _ = try sslContext() // refuse unreadable material at once, naming the file
    }

    /// The TLS context, rebuilt when a certificate file changed since it was made.
    func sslContext() throws -> NIOSSLContext {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        let now = [files.caCert, files.clientCert, files.clientKey].flatMap(Self.stamp)
        if let context, now == stamp { return context }
        for path in [files.caCert, files.clientCert, files.clientKey] where access(path, R_OK) != 0 {
            throw Failure.tlsFiles("\(path) cannot be read: \(String(cString: strerror(errno)))")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.cipherSuiteValues = [.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                                 .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        tls.certificateVerification = .fullVerification
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(files.caCert))
        } catch { throw Failure.tlsFiles("\(files.caCert): \(error)") }
        do {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(files.clientCert).map { .certificate($0) }
        } catch { throw Failure.tlsFiles("\(files.clientCert): \(error)") }
        do {
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: files.clientKey, format: .pem))
        } catch { throw Failure.tlsFiles("\(files.clientKey): \(error)") }
        let made: NIOSSLContext
        do { made = try NIOSSLContext(configuration: tls) } catch { throw Failure.tlsFiles("\(error)") }
        context = made
        stamp = now
        return made
    }

    static func stamp(_ path: String) -> [Int64] {
        var info = stat()
        guard stat(path, &info) == 0 else { return [-1] }
        return [Int64(info.st_ino), Int64(info.st_size), Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
    }

    /// One GET of the policies (of `groupIDs` only, when given). Throws `Failure`.
    public func fetch(groupIDs: [String] = []) async throws -> [Policy] {
        let context = try sslContext()
        var path = basePath + PolicyDocument.path
        if !groupIDs.isEmpty { path += "?id=" + groupIDs.joined(separator: ",") }
        let isIP = host.contains(":") || host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        let collector = ResponseCollector(promise: group.next().makePromise())
        let host = self.host, port = self.port, requestHost = self.host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(Int64(connectTimeout * 1000)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // An IP literal cannot be sent as SNI; the peer's certificate is then checked
                    // against the address itself.
                    let tls = try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
        let channel: Channel
        do { channel = try await bootstrap.connect(host: host, port: port).get() } catch {
            // No channel, so no handler will ever answer the promise: answer it here.
            collector.fail(error)
            throw Failure.connect("\(host):\(port): \(error)")
        }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path,
                                   headers: ["Host": requestHost, "Accept": "application/json", "Connection": "close"])
        channel.writeAndFlush(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(requestTimeout * 1000))) {
            collector.fail(Failure.timeout(self.requestTimeout))
            channel.close(promise: nil)
        }
        defer { timeout.cancel(); channel.close(promise: nil) }
        let (status, body): (Int, [UInt8])
        do { (status, body) = try await collector.promise.futureResult.get() } catch let error as Failure { throw error } catch {
            throw Failure.connect("\(host):\(port): \(error)")
        }
        guard status == 200 else { throw Failure.http(status: status) }
        do { return try decoder.decode(body) } catch { throw Failure.decode(error) }
    }

    /// `fetch` retried with exponential backoff and jitter: `attempts` tries, starting at `delay` s.
    public func fetchRetrying(groupIDs: [String] = [], attempts: Int = 3, delay: Double = 0.5) async throws -> [Policy] {
        var wait = delay
        for attempt in 1...max(1, attempts) {
            do { return try await fetch(groupIDs: groupIDs) } catch let error as Failure {
                // A bad answer or bad TLS material will not get better by asking again at once.
                if case .decode = error { throw error }
                if case .tlsFiles = error { throw error }
                if attempt == attempts { throw error }
            }
            let jittered = wait * Double.random(in: 0.5...1.5)
            try await Task.sleep(nanoseconds: UInt64(jittered * 1_000_000_000))
            wait *= 2
        }
        throw Failure.connect("no attempt made")
    }
}

/// Collects one HTTP response: status and body (at most 64 MiB).
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable { // used on its channel's event loop only
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<(Int, [UInt8])>
    private var status = 0
    private var body: [UInt8] = []
    private var done = false

    init(promise: EventLoopPromise<(Int, [UInt8])>) { self.promise = promise }

    func fail(_ error: Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var buffer):
            if body.count + buffer.readableBytes > 64 << 20 { fail(PolicyClient.Failure.http(status: 413)); context.close(promise: nil); return }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard !done else { return }
            done = true
            promise.succeed((status, body))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(PolicyClient.Failure.connect("connection closed before the answer was complete"))
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
