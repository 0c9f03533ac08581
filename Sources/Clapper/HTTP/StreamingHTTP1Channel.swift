import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1.1 server, except that an event stream request leaves it.
///
/// Hummingbird serves each connection from a task over a `NIOAsyncChannel` that lasts as long as
/// the connection; an idle event stream would keep that task, its async frames and its buffers
/// (the notes measured 11 KB for a bare Hummingbird connection). Here the pipeline is set up as
/// `HTTP1Channel` sets it up, with an `EventStreamGate` in front of where the `NIOAsyncChannel`
/// goes, and the `NIOAsyncChannel` is made only when the connection's first request is not an
/// event stream. An event stream request (`EventStreamServer.isStream`) is answered by
/// `EventStreamServer`: through the same router and middleware (auth, CORS, request ids, logs),
/// then its connection becomes a `ChannelStream` and the task ends. An event stream asked for
/// later on a keep-alive connection leaves the same way; that connection's Hummingbird task
/// waits, idle, until it closes.
struct StreamingHTTP1Channel: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// The connection's `NIOAsyncChannel`, once its first request is plain HTTP; nil when it
        /// became an event stream or closed first.
        let http: EventLoopFuture<NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>?>
    }

    let http1: HTTP1Channel
    let streams: EventStreamServer

    /// The handlers an event stream's connection no longer needs once it is open.
    static var httpHandlerTypes: [any ChannelHandler.Type] {
        [
            HTTPResponseEncoder.self, ByteToMessageHandler<HTTPRequestDecoder>.self, HTTP1ToHTTPServerCodec.self,
            HTTPConnectionStateHandler.self, RequestHeadTimeoutHandler.self, RequestBytesWatcher.self, EventStreamGate.self,
        ]
    }

    /// Receive buffers start at 512 bytes (an event stream's request fits) and grow for bigger
    /// requests (webhooks, job submissions), as NIO's adaptive default from 2 KB does.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let configuration = http1.configuration
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = configuration.httpDecoder.maxHeaderFieldSize
            limits.maxHeaderListSize = configuration.httpDecoder.maxHeaderListSize
            limits.maxHeaderFieldCount = configuration.httpDecoder.maxHeaderFieldCount
            let pipeline = channel.pipeline.syncOperations
            // A channel keeps its last receive buffer for the next read (NIO's default starts at
            // 2 KB): for an idle event stream, that buffer would be most of what it costs.
            try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: limits
            )
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandlers(configuration.additionalChannelHandlers())
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout.map { .init($0) }, logger: logger))
            let http = channel.eventLoop.makePromise(of: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>?.self)
            try pipeline.addHandler(EventStreamGate(streams: streams, http: http, logger: logger))
            return Value(channel: channel, http: http.futureResult)
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let asyncChannel = try? await value.http.get() else { return }
        await http1.handle(value: asyncChannel, logger: logger)
    }
}

/// Sits where Hummingbird's `NIOAsyncChannel` goes and looks at every request head. An event
/// stream request (and whatever follows it on the connection) goes to `EventStreamServer`; the
/// rest goes on to Hummingbird, whose `NIOAsyncChannel` this gate makes when the connection's
/// first request (or a parse error) arrives.
final class EventStreamGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private enum State {
        /// No request yet: no `NIOAsyncChannel` either.
        case waiting
        /// Hummingbird has the connection.
        case http
        /// The connection is an event stream, or closed before its first request: every later
        /// byte is ignored.
        case stream
    }

    private var state = State.waiting
    private let streams: EventStreamServer
    private let http: EventLoopPromise<NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>?>
    private let logger: Logger

    init(streams: EventStreamServer, http: EventLoopPromise<NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>?>, logger: Logger) {
        self.streams = streams
        self.http = http
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .stream:
            return
        case .waiting, .http:
            if case .head(let head) = unwrapInboundIn(data), EventStreamServer.isStream(head) {
                noHTTP()
                state = .stream
                // First in the pipeline from now on: reads, closes and quiesce go to the stream.
                let handler = ChannelStreamHandler()
                do {
                    try context.pipeline.syncOperations.addHandler(handler, position: .first)
                } catch {
                    context.close(promise: nil)
                    return
                }
                streams.serve(head, channel: context.channel, handler: handler)
                return
            }
            handToHummingbird(context)
            context.fireChannelRead(data)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard state != .stream else {
            context.close(promise: nil)
            return
        }
        // Hummingbird answers a parse error (400) and closes.
        handToHummingbird(context)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        noHTTP()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        noHTTP()
    }

    /// The connection will not be Hummingbird's (if it is not already).
    private func noHTTP() {
        guard state == .waiting else { return }
        state = .stream
        http.succeed(nil)
    }

    /// Makes the `NIOAsyncChannel` (after this handler) on the connection's first plain request.
    private func handToHummingbird(_ context: ChannelHandlerContext) {
        guard state == .waiting else { return }
        state = .http
        do {
            http.succeed(try NIOAsyncChannel(wrappingChannelSynchronously: context.channel, configuration: .init(isOutboundHalfClosureEnabled: true)))
        } catch {
            logger.debug("cannot hand a connection to the HTTP server", metadata: ["error": "\(error)"])
            http.succeed(nil)
            context.close(promise: nil)
        }
    }
}
