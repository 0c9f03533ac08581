import NIOCore

/// A request refused before any byte of it was written (the connection was already closing):
/// safe to send again on another connection.
struct NotSent: Error {}

/// One batch of commands sent together, answered with one reply per command, in order.
struct RedisRequest {
    var commands: [RedisCommand]
    var promise: EventLoopPromise<[RedisValue]>
}

/// Speaks RESP on one channel with many requests in flight: commands are encoded into one
/// outbound buffer and flushed once per event-loop turn; replies, parsed by hiredis's reader,
/// are matched to requests first in, first out.
///
/// A request unanswered after `commandTimeout` fails the connection: it and everything behind it
/// fail with `.timeout` and the channel closes (a late reply could no longer be matched).
/// Every failure closes the channel and fails what is pending; nothing is retried here.
///
/// Not `Sendable`: used only on its channel's event loop (`RedisPipelineConnection` hops there).
final class RedisChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<[RedisValue]>
        var expected: Int
        var deadline: NIODeadline
    }

    private let commandTimeout: TimeAmount
    private let reader: RedisReplyReader?
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    /// Replies of the oldest pending request received so far.
    private var collected: [RedisValue] = []
    private var outbound: ByteBuffer?
    private var flushScheduled = false
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    /// Set once the connection is going away; later requests fail with it at once.
    private var failure: RedisError?
    /// Close once nothing is pending (`drain()`): new callers are sent elsewhere, answers still come.
    private var draining = false
    /// Called once when the connection is lost without our asking (Redis closed it, or a socket
    /// error), before anything pending fails: its siblings likely went with it.
    var onLost: (() -> Void)?

    init(commandTimeout: TimeAmount) {
        self.commandTimeout = commandTimeout
        self.reader = RedisReplyReader()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if reader == nil { fail(RedisError(.protocolError, "could not allocate a reply reader")) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(failure ?? RedisError(.connectionClosed, "connection closed"))
        self.context = nil
    }

    /// Queues a request; the flush goes out once this event-loop turn has queued what it will.
    /// On a connection already closing it fails with `NotSent`: nothing went out.
    func enqueue(_ request: RedisRequest) {
        guard failure == nil, let context else {
            request.promise.fail(NotSent())
            return
        }
        var buffer = outbound ?? context.channel.allocator.buffer(capacity: 512)
        outbound = nil  // `buffer` holds the only reference: the writes below do not copy it
        for command in request.commands {
            buffer.writeRedisCommand(command)
        }
        outbound = buffer
        let deadline = NIODeadline.now() + commandTimeout
        pending.append(Pending(promise: request.promise, expected: request.commands.count, deadline: deadline))
        if timer == nil { armTimer(at: deadline) }
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute { self.flushOutbound() }
        }
    }

    private func flushOutbound() {
        flushScheduled = false
        guard let context, let buffer = outbound else { return }
        outbound = nil
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let reader, failure == nil else { return }
        let buffer = unwrapInboundIn(data)
        let fed = buffer.withUnsafeReadableBytes { bytes -> RedisError? in
            do throws(RedisError) { try reader.feed(bytes) } catch { return error }
            return nil
        }
        if let fed { return fail(fed) }
        do throws(RedisError) {
            while let reply = try reader.next() {
                guard let head = pending.first else {
                    throw RedisError(.protocolError, "a reply no command asked for")
                }
                collected.append(reply)
                if collected.count == head.expected {
                    let replies = collected
                    collected = []
                    pending.removeFirst()
                    head.promise.succeed(replies)
                    if draining && pending.isEmpty { context.close(promise: nil) }
                }
            }
        } catch {
            fail(error)
        }
    }

    /// Closes the channel once every pending request is answered.
    func drain() {
        draining = true
        if pending.isEmpty { context?.close(promise: nil) }
    }

    private func reportLost() {
        guard failure == nil, !draining, let onLost else { return }
        self.onLost = nil
        onLost()
    }

    func channelInactive(context: ChannelHandlerContext) {
        reportLost()
        let error = failure ?? RedisError(.connectionClosed, "connection lost")
        failure = error
        failAll(error)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        reportLost()
        fail(RedisError(.connectionClosed, "\(error)"))
    }

    /// Fails every pending request with `error` and closes the channel.
    private func fail(_ error: RedisError) {
        let first = failure ?? error
        failure = first
        failAll(first)
        context?.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        timer?.cancel()
        timer = nil
        outbound = nil
        collected = []
        while let request = pending.popFirst() {
            request.promise.fail(error)
        }
    }

    /// One timer per connection, set for the oldest request's deadline: when it fires early (that
    /// request was answered), it moves on to the new oldest instead of being rescheduled per reply.
    private func armTimer(at deadline: NIODeadline) {
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { self.timerFired() }
    }

    private func timerFired() {
        timer = nil
        guard let oldest = pending.first else { return }
        if oldest.deadline <= .now() {
            fail(RedisError(.timeout, "no reply within the command timeout"))
        } else {
            armTimer(at: oldest.deadline)
        }
    }
}
