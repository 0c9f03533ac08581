import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Answers the event stream requests that `EventStreamGate` takes off Hummingbird's connection
/// handling: the request goes through the same router and middleware as any other (auth, CORS,
/// request ids, logs, errors as JSON), in a task that ends as soon as the response is known. When
/// the route opened a stream (`StreamHandoff`) and answers 200, the connection becomes that
/// `ChannelStream`; any other answer (401, 404, 429, ...) is written whole with
/// `Connection: close`, and the connection closes.
struct EventStreamServer: Sendable {
    let responder: any HTTPResponder<ClapperRequestContext>
    /// The `Server` header, as Hummingbird sends it on other responses.
    let serverName: String?
    let logger: Logger

    /// `GET /v1/events` and `GET /v1/jobs/{id}/events` (the query aside).
    static func isStream(_ head: HTTPRequest) -> Bool {
        guard head.method == .get, let target = head.path else { return false }
        let path = target.utf8.firstIndex(of: UInt8(ascii: "?")).map { target[..<$0] } ?? target[...]
        if path == "/v1/events" { return true }
        guard path.hasPrefix("/v1/jobs/"), path.hasSuffix("/events") else { return false }
        let id = path.dropFirst("/v1/jobs/".count).dropLast("/events".count)
        return !id.isEmpty && !id.contains("/")
    }

    /// Answers `head` (the gate took it) in a task; `handler` is first in the channel's pipeline.
    func serve(_ head: HTTPRequest, channel: any Channel, handler: ChannelStreamHandler) {
        let handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        Task { await respond(to: head, on: channel, handler: handler) }
    }

    private func respond(to head: HTTPRequest, on channel: any Channel, handler: NIOLoopBound<ChannelStreamHandler>) async {
        let handoff = StreamHandoff(channel: channel)
        var context = ClapperRequestContext(source: .init(channel: channel, logger: logger))
        context.streamHandoff = handoff
        var response: Response
        do {
            response = try await responder.respond(to: Request(head: head, body: RequestBody(buffer: ByteBuffer())), context: context)
        } catch {
            logger.debug("event stream request failed", metadata: ["error.type": "\(type(of: error))"])
            response = Response(status: .internalServerError)
        }
        if let serverName { response.headers[.server] = serverName }
        response.headers[.date] = HTTPDate.now
        if let offer = handoff.take() {
            if response.status == .ok {
                var head = response.head
                head.headerFields[.contentLength] = nil
                channel.eventLoop.execute { [head] in offer.stream.open(head: head, pump: offer.pump, frames: offer.frames, handler: handler.value) }
                return
            }
            offer.stream.end(.completed)
        }
        await writeWhole(response, to: channel)
    }

    /// Writes a response that is not a stream (an error, mostly) and closes the connection.
    private func writeWhole(_ response: Response, to channel: any Channel) async {
        let body = BodyCollector()
        do {
            try await response.body.write(BodyCollector.Writer(collector: body))
        } catch {
            logger.debug("cannot write an event stream's error response", metadata: ["error.type": "\(type(of: error))"])
        }
        var head = response.head
        let bytes = body.bytes
        head.headerFields[.contentLength] = "\(bytes.readableBytes)"
        head.headerFields[.connection] = "close"
        channel.eventLoop.execute { [head] in
            let pipeline = channel.pipeline.syncOperations
            pipeline.write(NIOAny(HTTPResponsePart.head(head)), promise: nil)
            if bytes.readableBytes > 0 { pipeline.write(NIOAny(HTTPResponsePart.body(bytes)), promise: nil) }
            let written = channel.eventLoop.makePromise(of: Void.self)
            pipeline.writeAndFlush(NIOAny(HTTPResponsePart.end(nil)), promise: written)
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Where an event stream route leaves the stream it opened, for `EventStreamServer` to open once
/// the middleware has had the response. Set on the request context only for requests the gate
/// took; without it the route streams through the response body (see `EventsController`).
final class StreamHandoff: Sendable {
    struct Offer: Sendable {
        let stream: ChannelStream
        let pump: StreamPump
        /// What the stream opens with, encoded as the pump writes.
        let frames: [ByteBuffer]
    }

    /// The connection the stream will be written to.
    let channel: any Channel
    private let offer = Mutex<Offer?>(nil)

    init(channel: any Channel) {
        self.channel = channel
    }

    func put(_ offer: Offer) {
        self.offer.withLock { $0 = offer }
    }

    func take() -> Offer? {
        offer.withLock { offer in
            defer { offer = nil }
            return offer
        }
    }
}

/// The bytes a response body writes, gathered.
private final class BodyCollector: Sendable {
    private let buffer = Mutex(ByteBuffer())

    var bytes: ByteBuffer { buffer.withLock { $0 } }

    struct Writer: ResponseBodyWriter {
        let collector: BodyCollector

        mutating func write(_ part: ByteBuffer) async throws {
            collector.buffer.withLock { buffer in
                var part = part
                buffer.writeBuffer(&part)
            }
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
