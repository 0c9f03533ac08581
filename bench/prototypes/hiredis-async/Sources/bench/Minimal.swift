import CHiredisLoop
import NIOCore
import NIOPosix

/// Mode "nio-minimal": Clapper's transport design (NIO owns the socket, hiredis's reader parses,
/// one flush per event-loop turn, one connection per loop, callers use their own loop's
/// connection) with none of its client layers: no futures, arrays, RedisValue, metrics, pool.
/// The continuation is resumed straight from channelRead.
final class MinimalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var pending = CircularBuffer<(UnsafeContinuation<Int32, Never>, Int32)>(initialCapacity: 128)
    private var outbound: ByteBuffer?
    private var flushScheduled = false
    private var context: ChannelHandlerContext?
    private let reader = redisReaderCreate()!

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func enqueue(_ bytes: [UInt8], expect: Int32, _ continuation: UnsafeContinuation<Int32, Never>) {
        guard let context else { return continuation.resume(returning: 1) }
        var buffer = outbound ?? context.channel.allocator.buffer(capacity: 1024)
        outbound = nil
        buffer.writeBytes(bytes)
        outbound = buffer
        pending.append((continuation, expect))
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute { self.flush() }
        }
    }

    private func flush() {
        flushScheduled = false
        guard let context, let buffer = outbound else { return }
        outbound = nil
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { bytes in
            _ = redisReaderFeed(reader, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        var raw: UnsafeMutableRawPointer?
        while redisReaderGetReply(reader, &raw) == REDIS_OK, let reply = raw {
            raw = nil
            let type = reply.assumingMemoryBound(to: redisReply.self).pointee.type
            freeReplyObject(reply)
            let (continuation, expect) = pending.removeFirst()
            let ok = (expect == 1 && type == REDIS_REPLY_STATUS) || (expect == 2 && type == REDIS_REPLY_INTEGER)
            continuation.resume(returning: ok ? 0 : 1)
        }
    }
}

// A throwaway benchmark, not product code. Safe as used: both stored properties are `let`; the
// handler's mutable state is touched only on its channel's event loop.
final class MinimalConnection: @unchecked Sendable {
    let channel: any Channel
    let handler: MinimalHandler

    init(channel: any Channel, handler: MinimalHandler) {
        self.channel = channel
        self.handler = handler
    }

    static func connect(port: Int, on loop: any EventLoop) async throws -> MinimalConnection {
        let handler = MinimalHandler()
        nonisolated(unsafe) let h = handler
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(h) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return MinimalConnection(channel: channel, handler: handler)
    }

    func send(_ bytes: [UInt8], expect: Int32) async -> Int32 {
        await withUnsafeContinuation { continuation in
            let loop = channel.eventLoop
            if loop.inEventLoop {
                handler.enqueue(bytes, expect: expect, continuation)
            } else {
                let handler = self.handler
                loop.execute { handler.enqueue(bytes, expect: expect, continuation) }
            }
        }
    }
}

/// RESP bytes of a command.
func resp(_ parts: [String]) -> [UInt8] {
    var out = Array("*\(parts.count)\r\n".utf8)
    for part in parts { out += Array("$\(part.utf8.count)\r\n\(part)\r\n".utf8) }
    return out
}
