import Fal
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Redis
import ServiceLifecycle
import Synchronization

/// The server-sent event streams:
/// - `GET /v1/jobs/{id}/events`: `snapshot` (or the changes after `Last-Event-ID`), then `job`
///   per change with `id:` = the change's stream id, then `done` when the job is finished.
/// - `GET /v1/events`: `job` events for every job of the caller.
///
/// The caller is the bearer token's user, or the user of a signed `?token=` (see
/// `EventTokenSigner`). Every stream starts with `retry:`, sends a heartbeat comment every
/// `CLAPPER_SSE_HEARTBEAT_SECONDS`, and ends with a short `retry:` on graceful shutdown or when it
/// fell behind. A closed connection ends its stream at once and frees its subscription.
/// A user holds at most `CLAPPER_SSE_MAX_STREAMS_PER_USER` streams on one instance (both routes
/// together); past it, 429 `too_many_streams` with `Retry-After`.
struct EventsController: Sendable {
    let hub: EventHub
    let redis: RedisClient
    let keys: JobKeys
    let signer: EventTokenSigner
    let heartbeat: Duration
    let streams: StreamLimiter
    /// Media custody: snapshots and replays get fresh presigned URLs.
    var links = MediaLinks.off
    /// `CLAPPER_PUBLIC_URL`: the base of the `eventsUrl`s handed out.
    var publicURL = ""

    /// `Retry-After` of a 429 `too_many_streams`, in seconds.
    static let tooManyStreamsRetrySeconds = 5

    /// `retry:` when a stream opens, and when it ends because the gateway stops or it fell behind.
    static let retryMilliseconds = 3000
    static let endRetryMilliseconds = 500
    /// How long a stream may take to say goodbye on shutdown before it is cut.
    static let shutdownGrace: Duration = .seconds(2)
    /// How long a stream dropped for falling behind may take to write its goodbye.
    static let droppedGrace: Duration = .milliseconds(250)
    static let lastEventIDHeader = HTTPField.Name("Last-Event-ID")!

    static let headers: HTTPFields = [
        .contentType: "text/event-stream; charset=utf-8",
        .cacheControl: "no-cache, no-store",
        HTTPField.Name("X-Accel-Buffering")!: "no",
        // The connection closes when the stream ends: no client may reuse it for another request.
        .connection: "close",
    ]

    /// Under the users' group (`/v1`): `GET /v1/jobs/{id}/events`, `GET /v1/events`.
    func addRoutes(to users: RouterGroup<ClapperRequestContext>) {
        users.get("jobs/{id}/events") { request, context in try await jobEvents(request, context) }
        users.get("events") { request, context in try await userEvents(request, context) }
        users.post("events/token") { _, context in try await newToken(context) }
    }

    /// `POST /v1/events/token`: a fresh token for the caller's all-jobs stream (a browser renews
    /// with it when its stream said `token-expired`), with the URL to open and when it expires.
    func newToken(_ context: ClapperRequestContext) async throws -> Response {
        let userID = try context.requireUser()
        let now = Date()
        let token = signer.token(scope: .user, userID: userID, now: now)
        var w = JSONWriter()
        w.beginObject()
        w.field("token", token)
        w.field("eventsUrl", signer.userEventsURL(base: publicURL, token: token))
        w.field("expiresAt", Timestamp.iso8601(now.addingTimeInterval(signer.lifetime)))
        w.endObject()
        return Response.json(w.bytes, headers: [.cacheControl: "no-store"])
    }

    // MARK: - One job

    func jobEvents(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let jobID = try context.parameters.require("id")
        let (userID, expires) = try caller(request, context, for: .job(jobID))
        guard (1...200).contains(jobID.utf8.count) else { throw APIError.notFound("no job \(jobID)") }
        // Released by the stream when it ends, or on any early exit below (the slot's deinit).
        let slot = try streamSlot(for: userID)
        // Subscribe before reading, so no change can fall between the read and the live stream.
        let subscription = subscribe(context, jobID: jobID, userID: nil, slot: slot)
        let history: EventHistory?
        do {
            history = try await Self.inShortTask { [redis, keys, links, resume = lastEventID(request)] in
                try await EventHistory.read(redis: redis, keys: keys, jobID: jobID, after: resume, links: links)
            }
        } catch {
            subscription.cancel()
            context.logger.warning("cannot read a job's events", metadata: ["error": "\(error)"])
            throw APIError.unavailable("events are unavailable right now")
        }
        guard let history, history.userID == userID else {
            subscription.cancel()
            throw APIError.notFound("no job \(jobID)")
        }
        endAtExpiry(expires, subscription)
        return streamResponse(request, subscription, slot) { chunked in
            StreamPump.job(jobID: jobID, history: history, chunked: chunked)
        }
    }

    // MARK: - All of a user's jobs

    func userEvents(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let (userID, expires) = try caller(request, context, for: .user)
        let slot = try streamSlot(for: userID)
        let subscription = subscribe(context, jobID: nil, userID: userID, slot: slot)
        var replay: [JobChange] = []
        if let resume = lastEventID(request) {
            do {
                replay = try await Self.inShortTask { [redis, keys, links] in
                    try await EventHistory.userReplay(redis: redis, keys: keys, userID: userID, after: resume, recentJobs: EventHub.recentJobsPerUser, links: links)
                }
            } catch {
                subscription.cancel()
                context.logger.warning("cannot read a user's events", metadata: ["error": "\(error)"])
                throw APIError.unavailable("events are unavailable right now")
            }
        }
        let floor = subscription.floor
        endAtExpiry(expires, subscription)
        return streamResponse(request, subscription, slot) { [replay] chunked in
            StreamPump.user(replay: replay, floor: floor, chunked: chunked)
        }
    }

    // MARK: - Streaming

    /// A stream's subscription: a `ChannelStream` when the request came through the gate
    /// (`StreamHandoff`), else a sink that the response body drains.
    enum Subscription: Sendable {
        case channel(ChannelStream, StreamHandoff, EventSubscription.Floor?)
        case sink(EventSubscription)

        var floor: EventSubscription.Floor? {
            switch self {
            case .channel(_, _, let floor): floor
            case .sink(let subscription): subscription.floor
            }
        }

        func cancel() {
            switch self {
            case .channel(let stream, _, _): stream.end(.completed)
            case .sink(let subscription): subscription.cancel()
            }
        }
    }

    func subscribe(_ context: ClapperRequestContext, jobID: String?, userID: String?, slot: StreamSlot) -> Subscription {
        guard let handoff = context.streamHandoff else {
            return .sink(hub.subscribe(jobID: jobID, userID: userID, heartbeat: heartbeat))
        }
        let (stream, floor) = hub.add { [hub, heartbeat] id in
            ChannelStream(id: id, jobID: jobID, userID: userID, heartbeat: heartbeat, channel: handoff.channel, hub: hub, slot: slot, bufferSize: hub.bufferSize)
        }
        return .channel(stream, handoff, floor)
    }

    /// Runs `operation` in a child task and returns its result. The task that serves a stream
    /// through a response body keeps the memory of its deepest await (the async frames of a Redis
    /// call) for as long as the stream lasts; a child task gives it back when it ends.
    static func inShortTask<Value: Sendable>(_ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        try await withThrowingTaskGroup(of: Value.self) { group in
            group.addTask(operation: operation)
            for try await value in group { return value }
            throw CancellationError()
        }
    }

    /// The `text/event-stream` response. Through the gate: the stream and what it opens with go
    /// to the handoff, and the connection becomes the stream once the middleware is done with
    /// this (body-less) response. Otherwise: a body that writes the stream (`pumpSink`).
    func streamResponse(
        _ request: Request,
        _ subscription: Subscription,
        _ slot: StreamSlot,
        start: @escaping @Sendable (_ chunked: Bool) -> (StreamPump, [ByteBuffer])
    ) -> Response {
        switch subscription {
        case .channel(let stream, let handoff, _):
            let (pump, frames) = start(true)
            handoff.put(.init(stream: stream, pump: pump, frames: frames))
            return Response(status: .ok, headers: Self.headers)
        case .sink(let subscription):
            // Taken once: what the stream opens with is not kept for its lifetime.
            let start = TakeOnce(start)
            return sinkResponse(request, subscription, slot) { sink, writer in
                guard let (pump, frames) = start.take()?(false) else { return }
                try await Self.pumpSink(pump, opening: frames, sink: sink, writer: &writer)
            }
        }
    }

    /// Writes a stream from its sink: the opening frames, then what each batch of changes adds,
    /// heartbeats, and a goodbye when the sink ends.
    static func pumpSink(_ pump: StreamPump, opening: [ByteBuffer], sink: EventSink, writer: inout any ResponseBodyWriter) async throws {
        var pump = pump
        var frames = opening
        try await write(&frames, to: &writer)
        guard !pump.isFinished else { return }
        var batch: [JobChange] = []
        while true {
            switch await sink.next(&batch) {
            case .heartbeat:
                try await writer.write(StreamPump.heartbeat)
            case .changes:
                var finished = false
                for change in batch where !finished {
                    finished = pump.take(change, into: &frames)
                }
                try await write(&frames, to: &writer)
                if finished { return }
            case .ended:
                if let goodbye = sink.endReason.flatMap(StreamPump.goodbye) { try await writer.write(goodbye) }
                return
            }
        }
    }

    /// Writes frames in one write (one flush), then lets go of them (keeping the array's storage):
    /// an idle stream holds no frame.
    static func write(_ frames: inout [ByteBuffer], to writer: inout any ResponseBodyWriter) async throws {
        switch frames.count {
        case 0: return
        case 1: try await writer.write(frames[0])
        default: try await writer.write(contentsOf: frames)
        }
        frames.removeAll(keepingCapacity: true)
    }

    struct StreamClosed: Error {
        let reason: StreamEndReason
    }

    /// A `text/event-stream` response whose body runs `pump` until it returns, the client goes
    /// away, the stream falls behind (cut after `droppedGrace`, even in a blocked write) or the gateway shuts
    /// down (the pump says `retry:`; cut after `shutdownGrace`). The subscription ends with it.
    ///
    /// One child task writes (the pump; heartbeats come from the hub's shared tick); the body's
    /// own task waits for the sink to end and cancels the writer when the stream must be cut.
    func sinkResponse(
        _ request: Request,
        _ subscription: EventSubscription,
        _ slot: StreamSlot,
        pump: @escaping @Sendable (EventSink, inout any ResponseBodyWriter) async throws -> Void
    ) -> Response {
        // Only the body is kept for the stream's lifetime, not the whole request.
        let requestBody = request.body
        return Response(status: .ok, headers: Self.headers, body: ResponseBody { writer in
            let sink = subscription.sink
            let box = WriterBox(writer)
            defer { subscription.cancel() }
            // Runs first: once the hub has let go of the subscription, the slot is free too.
            defer { slot.release() }
            try await requestBody.consumeWithInboundCloseHandler { _ in
                try await withGracefulShutdownHandler {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            // However the pump ends, the waiting task below wakes up.
                            defer { sink.end(.completed) }
                            var writer = box.take()
                            try await pump(sink, &writer)
                            try await writer.finish(nil)
                        }
                        switch await sink.ended() {
                        case .completed:
                            break
                        case .shutdown, .tokenExpired:
                            group.addTask {
                                try await Task.sleep(for: Self.shutdownGrace)
                                throw StreamClosed(reason: .shutdown)
                            }
                        case .dropped:
                            // A moment to say "reconnect with Last-Event-ID"; a client that reads
                            // nothing any more is cut when it is over.
                            group.addTask {
                                try await Task.sleep(for: Self.droppedGrace)
                                throw StreamClosed(reason: .dropped)
                            }
                        case .clientClosed:
                            throw StreamClosed(reason: .clientClosed)
                        }
                        try await group.next()
                        group.cancelAll()
                    }
                } onGracefulShutdown: {
                    sink.end(.shutdown)
                }
            } onInboundClosed: {
                sink.end(.clientClosed)
            }
        })
    }

    // MARK: - Who is asking

    /// A place for one more stream of `userID`, or 429 `too_many_streams`.
    func streamSlot(for userID: String) throws -> StreamSlot {
        guard let slot = streams.acquire(userID: userID) else {
            throw APIError(
                .tooManyRequests,
                code: "too_many_streams",
                message: "this user already has \(streams.maxPerUser) event streams open; close one (GET /v1/events carries every job of the user) or retry later",
                headers: [.retryAfter: "\(Self.tooManyStreamsRetrySeconds)"]
            )
        }
        return slot
    }

    enum Target {
        case job(String)
        case user
    }

    /// The user of a valid `?token=` (scoped to this job or to the user), else the bearer's user.
    /// Who opens the stream, and when the token it was opened with expires (nil: a bearer token,
    /// checked once at the open).
    func caller(_ request: Request, _ context: ClapperRequestContext, for target: Target) throws -> (userID: String, expires: Date?) {
        if let token = request.uri.queryParameters.get("token") {
            guard let claims = signer.verify(token, now: Date()) else {
                throw APIError.unauthorized("the event token is invalid or expired", code: "invalid_token")
            }
            switch (claims.scope, target) {
            case (.user, _):
                return (claims.userID, claims.expires)
            case (.job(let tokenJob), .job(let jobID)) where tokenJob == jobID:
                return (claims.userID, claims.expires)
            case (.job, _):
                throw APIError(.forbidden, code: "forbidden", message: "this token opens the events of another job")
            }
        }
        guard let userID = context.userID else { throw APIError.unauthorized() }
        return (userID, nil)
    }

    /// Ends the stream with `token-expired` when its token expires (the timer goes when it closes first).
    func endAtExpiry(_ expires: Date?, _ subscription: Subscription) {
        guard let expires else { return }
        // A token's expiry is ours (signed), but the arithmetic is clamped before any conversion.
        let milliseconds = min(max(expires.timeIntervalSinceNow * 1000, 0), 86_400_000 * 366).rounded(.up)
        let delay = TimeAmount.milliseconds(Int64(milliseconds))
        switch subscription {
        case .channel(let stream, let handoff, _):
            let timer = handoff.channel.eventLoop.scheduleTask(in: delay) { stream.end(.tokenExpired) }
            handoff.channel.closeFuture.whenComplete { _ in timer.cancel() }
        case .sink(let subscription):
            let sink = subscription.sink
            let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: delay) { sink.end(.tokenExpired) }
            Task { _ = await sink.ended(); timer.cancel() }
        }
    }

    /// `Last-Event-ID` (header, or `lastEventId` in the query); a malformed one counts as none.
    func lastEventID(_ request: Request) -> StreamID? {
        let raw = request.headers[Self.lastEventIDHeader] ?? request.uri.queryParameters.get("lastEventId")
        return raw.flatMap { StreamID($0.trimmingCharacters(in: .whitespaces)) }
    }
}

/// Moves the response body writer into the one child task that writes the stream.
///
/// `@unchecked Sendable` proof: `writer` is set in `init` and read once by `take()`, called by
/// exactly one child task that starts after `init` returned (task creation orders the two); the
/// creating task never touches it afterwards.
final class WriterBox: @unchecked Sendable {
    private var writer: (any ResponseBodyWriter)?

    init(_ writer: any ResponseBodyWriter) {
        self.writer = writer
    }

    func take() -> any ResponseBodyWriter {
        defer { writer = nil }
        return writer!
    }
}

extension EventsController {
    init(configuration: ClapperConfiguration, redis: RedisClient, keys: JobKeys, hub: EventHub, streams: StreamLimiter, links: MediaLinks = .off) {
        self.init(hub: hub, redis: redis, keys: keys, signer: EventTokenSigner(secret: configuration.webhookSecret, lifetime: configuration.eventTokenLifetime.seconds), heartbeat: configuration.sseHeartbeat, streams: streams, links: links, publicURL: configuration.publicURL)
    }
}
