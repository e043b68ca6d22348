import NIOCore
import NIOHTTP1
import NIOPosix

/// The agent's listener: `GET /metrics` (Prometheus text), `GET /healthz`, and `POST /force-poll`,
/// which only a client on a loopback address may use.
public final class MetricsServer: @unchecked Sendable { // the channel is set once, at start
    let agent: Agent
    var channel: Channel?

    public init(agent: Agent) { self.agent = agent }

    public func start(host: String, port: Int) async throws {
        let agent = self.agent
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(agent: agent))
                }
            }
            .bind(host: host, port: port).get()
    }

    public func stop() async { try? await channel?.close() }

    final class Handler: ChannelInboundHandler, @unchecked Sendable { // used on its channel's event loop only
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let agent: Agent
        var head: HTTPRequestHead?

        init(agent: Agent) { self.agent = agent }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                let (status, body) = answer(head, remote: context.remoteAddress)
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "text/plain; version=0.0.4")
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                headers.add(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        }

        func answer(_ head: HTTPRequestHead, remote: SocketAddress?) -> (HTTPResponseStatus, String) {
            switch (head.method, head.uri) {
            case (.GET, "/metrics"): return (.ok, agent.metricsText())
            case (.GET, "/healthz"):
                return agent.snapshot.enforcing ? (.ok, "ok\n") : (.serviceUnavailable, "not enforcing yet\n")
            case (.POST, "/force-poll"):
                guard Self.isLoopback(remote) else { return (.forbidden, "force-poll is for local clients only\n") }
                agent.forcePoll()
                return (.accepted, "polling\n")
            default: return (.notFound, "not found\n")
            }
        }

        static func isLoopback(_ address: SocketAddress?) -> Bool {
            guard let ip = address?.ipAddress else { return false }
            return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
        }
    }
}
