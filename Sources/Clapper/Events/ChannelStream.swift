import Metrics
import NIOCore
import HTTPTypes
import NIOHTTPTypes

/// An event stream written straight to its connection, on the connection's event loop.
///
/// Made by the route when it takes the request (`StreamHandoff`), subscribed at once (changes
/// that arrive while the route still reads the job's history wait in a bounded buffer), and
/// `open`ed once the response head is known: the head and the opening frames are written, the
/// HTTP handlers leave the pipeline, and `ChannelStreamHandler` (put first in the pipeline when
/// the gate took the request) is all that is left. From then on the stream is bytes on a channel:
/// no task, no async sequence, no response body. Its loop's `LoopDelivery` writes it changes (a
/// pass over all of that loop's streams, one flush each) and its loop's `HeartbeatSchedule` its
/// heartbeats; each change's chunk is encoded once (`JobChange.chunk`, one copy per loop) and the
/// same bytes go to every stream of the loop.
///
/// Backpressure: a change for a stream whose channel is not writable (its client stopped reading
/// and the outbound buffer passed its high-water mark) ends the stream as `.dropped`. A stream
/// that ends says goodbye (`retry:`) when it was dropped or the gateway is shutting down, ends the
/// chunked body, and closes once that is written, or after a grace period if the client does not
/// read it. Either way its subscription and its user's stream slot are given back at once.
final class ChannelStream: EventTarget {
    let id: Int
    let jobID: String?
    let userID: String?
    let heartbeatInterval: Duration
    let channel: any Channel
    /// The channel's loop, kept: `channel.eventLoop` is a call through the existential each time.
    let loop: any EventLoop
    /// Weak: a stream outlives its subscription (a closed connection's handler, its loop's
    /// heartbeat schedule until its entry comes up) and must not keep the hub, and what the hub
    /// holds, alive, nor let the hub go last on an event loop.
    private weak let hub: EventHub?
    private let slot: StreamSlot
    private let bufferSize: Int
    private let state: NIOLoopBoundBox<State>

    /// Fields, not enum payloads: the pump changes in place (no copy of it per change).
    private struct State {
        enum Phase {
            /// Subscribed, head not written yet: changes wait in `pending`.
            case opening
            /// `pump` and `context` are set.
            case open
            case ended
        }

        var phase = Phase.opening
        var pending: [JobChange] = []
        var pump: StreamPump?
        var context: ChannelHandlerContext?
        var lastWrite = ContinuousClock.now
        /// Written since the last flush (`write`, then `flush` once for all of a pass).
        var unflushed = false
        /// Scratch for the frames of one write (its storage is kept).
        var frames: [ByteBuffer] = []
    }

    /// How long a stream may take to say goodbye before its connection is cut.
    static let shutdownGrace: TimeAmount = .seconds(2)
    static let droppedGrace: TimeAmount = .milliseconds(250)

    init(id: Int, jobID: String?, userID: String?, heartbeat: Duration, channel: any Channel, hub: EventHub, slot: StreamSlot, bufferSize: Int) {
        self.id = id
        self.jobID = jobID
        self.userID = userID
        self.heartbeatInterval = heartbeat
        self.channel = channel
        self.hub = hub
        self.slot = slot
        self.bufferSize = max(1, bufferSize)
        self.loop = channel.eventLoop
        self.state = .makeBoxSendingValue(State(), eventLoop: channel.eventLoop)
    }

    // MARK: - Opening

    /// Writes the response head (through the HTTP handlers, which frame the body as chunks) and
    /// the opening frames, hands the connection over from HTTP to this stream, and writes what
    /// arrived meanwhile. On the channel's loop.
    func open(head: HTTPResponse, pump: StreamPump, frames opening: [ByteBuffer], handler: ChannelStreamHandler) {
        loop.assertInEventLoop()
        guard case .opening = state.value.phase else {
            // Ended before it opened (fell behind already, or the gateway is stopping): the
            // client reconnects.
            channel.close(promise: nil)
            return
        }
        guard channel.isActive else {
            finish(.clientClosed)
            return
        }
        let context: ChannelHandlerContext
        channel.pipeline.syncOperations.write(NIOAny(HTTPResponsePart.head(head)), promise: nil)
        do {
            context = try Self.takeOver(channel, handler: handler)
        } catch {
            finish(.clientClosed)
            channel.close(promise: nil)
            return
        }
        handler.stream = self
        var pump = pump
        var frames = opening
        for change in state.value.pending where !pump.isFinished { _ = pump.take(change, into: &frames) }
        state.value.pending = []
        state.value.phase = .open
        state.value.pump = pump
        state.value.context = context
        let now = ContinuousClock.now
        state.value.lastWrite = now
        hub?.heartbeats(on: loop).add(self, due: now + heartbeatInterval)
        for frame in frames { context.write(NIOAny(frame), promise: nil) }
        context.flush()
        // The flush may have found the connection gone (and ended the stream).
        guard case .open = state.value.phase else { return }
        if pump.isFinished { finish(.completed) }
    }

    /// Takes the HTTP handlers out of the pipeline (`handler`, first since the gate took the
    /// request, keeps every read from what stays behind it).
    private static func takeOver(_ channel: any Channel, handler: ChannelStreamHandler) throws -> ChannelHandlerContext {
        let pipeline = channel.pipeline.syncOperations
        let context = try pipeline.context(handler: handler)
        for type in StreamingHTTP1Channel.httpHandlerTypes {
            if let found = try? pipeline.context(handlerType: type), let removable = found.handler as? any RemovableChannelHandler {
                pipeline.removeHandler(removable, promise: nil)
            }
        }
        return context
    }

    // MARK: - From its loop's delivery and heartbeat schedule (on the loop)

    /// Writes what `change` means for this stream (nothing when it already had it), not flushed;
    /// true when the stream now owes a flush (the first write since its last flush). A stream
    /// whose channel is not writable is dropped; one whose job finished ends (both flush).
    func write(_ change: JobChange) -> Bool {
        loop.assertInEventLoop()
        switch state.value.phase {
        case .opening:
            guard state.value.pending.count < bufferSize else {
                drop()
                return false
            }
            state.value.pending.append(change)
            return false
        case .open:
            // What the change adds first: one this stream already has (its writer's copy came
            // before the channel's) writes nothing and cannot find the stream behind.
            var frames = state.value.frames
            state.value.frames = []
            let finished = state.value.pump?.take(change, into: &frames) ?? true
            defer {
                frames.removeAll(keepingCapacity: true)
                state.value.frames = frames
            }
            guard !frames.isEmpty || finished else { return false }
            if !channel.isWritable, state.value.unflushed {
                // What this pass wrote and did not flush yet counts toward the high-water mark:
                // send it before deciding that the client fell behind.
                flush()
                guard case .open = state.value.phase else { return false }
            }
            guard channel.isWritable, let context = state.value.context else {
                drop()
                return false
            }
            for frame in frames { context.write(NIOAny(frame), promise: nil) }
            let owed = !frames.isEmpty && !state.value.unflushed
            if !frames.isEmpty { state.value.unflushed = true }
            if finished {
                finish(.completed)
                return false
            }
            return owed
        case .ended:
            return false
        }
    }

    /// Sends what `write` left unflushed.
    func flush() {
        loop.assertInEventLoop()
        guard case .open = state.value.phase, state.value.unflushed, let context = state.value.context else { return }
        state.value.unflushed = false
        state.value.lastWrite = .now
        context.flush()
    }

    /// Its loop's `HeartbeatSchedule`: a heartbeat when nothing was written for the interval by
    /// `horizon` (a pass of the schedule takes what is due a little after it runs); returns when
    /// the next is due, or nil once the stream has ended.
    func heartbeatIfIdle(by horizon: ContinuousClock.Instant, now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        loop.assertInEventLoop()
        guard case .open = state.value.phase, let context = state.value.context else { return nil }
        if horizon - state.value.lastWrite >= heartbeatInterval {
            context.writeAndFlush(NIOAny(StreamPump.heartbeatChunk), promise: nil)
            state.value.lastWrite = now
        }
        return state.value.lastWrite + heartbeatInterval
    }

    // MARK: - Ending

    func end(_ reason: StreamEndReason) {
        if loop.inEventLoop {
            finish(reason)
        } else {
            loop.execute { self.finish(reason) }
        }
    }

    private func drop() {
        EventHub.droppedCounter.increment()
        finish(.dropped)
    }

    /// Ends the stream once: gives its subscription and slot back, and, when it was open, says
    /// goodbye, ends the body and closes the connection when that is written (or the grace is up).
    private func finish(_ reason: StreamEndReason) {
        loop.assertInEventLoop()
        let phase = state.value.phase
        let context = state.value.context
        state.value.phase = .ended
        state.value.pending = []
        state.value.pump = nil
        state.value.context = nil
        switch phase {
        case .ended:
            return
        case .opening:
            break
        case .open:
            guard let context else { break }
            if reason == .clientClosed {
                context.close(promise: nil)
                break
            }
            if let goodbye = StreamPump.goodbye(reason) { context.write(NIOAny(HTTPChunk.wrap(goodbye)), promise: nil) }
            let written = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(NIOAny(HTTPChunk.last), promise: written)
            let channel = self.channel
            let cut = channel.eventLoop.scheduleTask(in: reason == .dropped ? Self.droppedGrace : Self.shutdownGrace) {
                channel.close(promise: nil)
            }
            written.futureResult.whenComplete { _ in
                cut.cancel()
                channel.close(promise: nil)
            }
        }
        hub?.remove(self)
        slot.release()
    }
}

/// The first handler of an event stream's connection, from the moment the gate takes the request:
/// drops whatever the client sends; ends the stream when the connection closes or the client
/// half-closes it; on the server's quiesce (graceful shutdown) ends it as `.shutdown`, or closes
/// the connection if its stream is not open yet. On the channel's loop only.
final class ChannelStreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Set when the stream opens.
    var stream: ChannelStream?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelInactive(context: ChannelHandlerContext) {
        // A stream not open yet sees the closed channel when it opens.
        stream?.end(.clientClosed)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            if let stream {
                stream.end(.shutdown)
            } else {
                context.close(promise: nil)
            }
        case let event as ChannelEvent where event == .inputClosed:
            // The client half-closed (it will read no more of what it asked for): gone.
            if let stream {
                stream.end(.clientClosed)
            } else {
                context.close(promise: nil)
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        stream?.end(.clientClosed)
        context.close(promise: nil)
    }
}
