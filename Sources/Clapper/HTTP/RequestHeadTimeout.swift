import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request head (request line and headers) does not arrive within
/// `CLAPPER_HTTP_HEADER_TIMEOUT_MS` of the request's first byte. The wait before a request's
/// first byte (a new connection, or between requests on a keep-alive one) is the idle timeout's
/// (Hummingbird's `HTTPConnectionStateHandler`), so a preconnected socket is not cut early; a
/// request whose head has arrived (an event stream included) is never cut by this timer.
///
/// Two handlers share one `State`: `RequestHeadTimeoutHandler` sits after the HTTP decoder
/// (it sees a head arrive and a response end) and puts a `RequestBytesWatcher` first in the
/// pipeline (it sees the first raw bytes of a request, before any head can be decoded).
/// Both run on the channel's event loop only.
final class RequestHeadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    final class State {
        let timeout: TimeAmount
        /// Requests whose head arrived and whose response has not ended.
        var inProgress = 0
        /// A head arrived and its request's end has not.
        var reading = false
        var timer: Scheduled<Void>?

        init(timeout: TimeAmount) {
            self.timeout = timeout
        }

        /// Nothing is being read or answered: the next bytes begin a new request.
        var awaitingHead: Bool { inProgress == 0 && !reading }

        func start(_ context: ChannelHandlerContext) {
            guard timer == nil, awaitingHead, context.channel.isActive else { return }
            let channel = context.channel
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
                guard let self else { return }
                self.timer = nil
                if self.awaitingHead { channel.close(promise: nil) }
            }
        }

        func stop() {
            timer?.cancel()
            timer = nil
        }
    }

    private let state: State

    init(timeout: TimeAmount) {
        state = State(timeout: timeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Ahead of the HTTP decoder: only raw bytes tell that a request has begun.
        try? context.pipeline.syncOperations.addHandler(RequestBytesWatcher(state: state), position: .first)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        state.stop()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            state.stop()
            state.inProgress += 1
            state.reading = true
        case .body:
            break
        case .end:
            state.reading = false
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            state.inProgress = max(0, state.inProgress - 1)
        }
        context.write(data, promise: promise)
    }
}

/// The raw-bytes side of `RequestHeadTimeoutHandler`: starts the timer when a request begins.
final class RequestBytesWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let state: RequestHeadTimeoutHandler.State

    init(state: RequestHeadTimeoutHandler.State) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        state.start(context)
        context.fireChannelRead(data)
    }
}
