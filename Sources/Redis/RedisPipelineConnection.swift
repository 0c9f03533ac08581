import NIOCore
import NIOPosix
import Synchronization

/// A non-blocking Redis connection on a SwiftNIO channel: any number of callers send at once,
/// their commands share the socket (pipelining) and replies come back to each in order.
/// No thread hop but the one onto the channel's event loop.
final class RedisPipelineConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<RedisChannelHandler>

    private init(channel: any Channel, handler: NIOLoopBound<RedisChannelHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// The client's loss count when this connection was handed out (`RedisNodeClient`); -1 before.
    let established = Atomic<Int>(-1)

    var eventLoop: any EventLoop { channel.eventLoop }
    var isActive: Bool { channel.isActive }
    var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Sends the commands as one batch; error replies come back as `.error` values in place.
    func execute(_ commands: [RedisCommand]) -> EventLoopFuture<[RedisValue]> {
        let promise = channel.eventLoop.makePromise(of: [RedisValue].self)
        let request = RedisRequest(commands: commands, promise: promise)
        if channel.eventLoop.inEventLoop {
            handler.value.enqueue(request)
        } else {
            let handler = self.handler
            channel.eventLoop.execute { handler.value.enqueue(request) }
        }
        return promise.futureResult
    }

    func close() {
        channel.close(promise: nil)
    }

    /// Closes once the requests already sent are answered.
    func drain() {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.drain() }
    }

    /// Opens a TCP connection on `eventLoop`, then sends AUTH and SELECT as the URL asks.
    /// Every failure, a rejected AUTH among them, is `.connectionFailed`. `onLost` is called on the
    /// loop when the connection is lost without our asking, before its pending requests fail.
    static func connect(
        _ configuration: RedisConfiguration,
        on eventLoop: any EventLoop,
        onLost: @escaping @Sendable (RedisPipelineConnection) -> Void = { _ in }
    ) -> EventLoopFuture<RedisPipelineConnection> {
        let url = configuration.url
        let commandTimeout = TimeAmount.nanoseconds(configuration.commandTimeout.nanoseconds)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(.nanoseconds(configuration.connectTimeout.nanoseconds))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(commandTimeout: commandTimeout))
                }
            }
            .connect(host: url.host, port: url.port)
            .flatMapErrorThrowing { error in
                throw RedisError(.connectionFailed, "\(url.host):\(url.port): \(error)")
            }
            .flatMap { channel in
                let handler: RedisChannelHandler
                do {
                    handler = try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self)
                } catch {
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(RedisError(.connectionFailed, "no Redis handler on the channel"))
                }
                let connection = RedisPipelineConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                // Weak: the handler outlives nothing it should keep alive.
                handler.onLost = { [weak connection] in if let connection { onLost(connection) } }
                return connection.handshake(configuration)
            }
    }

    private func handshake(_ configuration: RedisConfiguration) -> EventLoopFuture<RedisPipelineConnection> {
        let setup = configuration.url.handshake
        guard !setup.isEmpty else { return eventLoop.makeSucceededFuture(self) }
        return execute(setup).flatMapThrowing { replies in
            for case .error(let message) in replies {
                throw RedisError(.connectionFailed, message)
            }
            return self
        }.flatMapErrorThrowing { error in
            self.close()
            let redisError = error as? RedisError
            throw RedisError(.connectionFailed, redisError?.message ?? "\(error)")
        }
    }
}
