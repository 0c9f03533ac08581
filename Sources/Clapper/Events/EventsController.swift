import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
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
    }

    // MARK: - One job

    func jobEvents(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let jobID = try context.parameters.require("id")
        let userID = try caller(request, context, for: .job(jobID))
        guard (1...200).contains(jobID.utf8.count) else { throw APIError.notFound("no job \(jobID)") }
        // Released by the stream when it ends, or on any early exit below (the slot's deinit).
        let slot = try streamSlot(for: userID)
        // Subscribe before reading, so no change can fall between the read and the live stream.
        let subscription = hub.subscribe(jobID: jobID, heartbeat: heartbeat)
        let history: EventHistory?
        do {
            history = try await Self.inShortTask { [redis, keys, resume = lastEventID(request)] in
                try await EventHistory.read(redis: redis, keys: keys, jobID: jobID, after: resume)
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
        // Taken by the stream once: what it sends first is not kept for the stream's lifetime.
        let start = TakeOnce(history)
        return streamResponse(request, subscription, slot) { sink, writer in
            guard let history = start.take() else { return }
            try await Self.pumpJob(jobID: jobID, history: consume history, sink: sink, writer: &writer)
        }
    }

    static func pumpJob(jobID: String, history: consuming EventHistory, sink: EventSink, writer: inout any ResponseBodyWriter) async throws {
        var frames = [ServerSentEvent.retry(milliseconds: retryMilliseconds)]
        var position = history.lastID
        switch history.start {
        case .snapshot:
            frames.append(ServerSentEvent.frame(event: "snapshot", id: history.lastID?.description, data: history.view))
        case .replay(let entries):
            for entry in entries {
                frames.append(ServerSentEvent.frame(event: "job", id: entry.id.description, data: entry.view))
            }
        }
        // The view was read with the entries: it is the state after the last one.
        let head = JobChange.Head(view: history.view)
        _ = consume history
        if let head, head.isFinished {
            frames.append(doneFrame(jobID: jobID, status: head.status))
            try await write(&frames, to: &writer)
            return
        }
        try await write(&frames, to: &writer)
        frames = []
        var batch: [JobChange] = []
        while true {
            switch await sink.next(&batch) {
            case .heartbeat:
                try await writer.write(heartbeatFrame)
            case .changes:
                var finished: JobChange?
                for change in batch {
                    // Already sent (read with the snapshot or replay, or handed out twice by a catch-up).
                    if let position, change.id <= position { continue }
                    frames.append(change.frame)
                    position = change.id
                    if change.isFinished {
                        finished = change
                        break
                    }
                }
                if let finished { frames.append(doneFrame(jobID: jobID, status: finished.status)) }
                try await write(&frames, to: &writer)
                if finished != nil { return }
            case .ended:
                try await writeGoodbye(sink, &writer)
                return
            }
        }
    }

    /// The heartbeat comment, encoded once.
    static let heartbeatFrame = ServerSentEvent.comment("heartbeat")

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

    static func doneFrame(jobID: String, status: String) -> ByteBuffer {
        ServerSentEvent.frame(event: "done", data: Array(#"{"jobId":\#(JobRepository.jsonString(jobID)),"status":\#(JobRepository.jsonString(status))}"#.utf8))
    }

    // MARK: - All of a user's jobs

    func userEvents(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let userID = try caller(request, context, for: .user)
        let slot = try streamSlot(for: userID)
        let subscription = hub.subscribe(userID: userID, heartbeat: heartbeat)
        var replay: [JobChange] = []
        if let resume = lastEventID(request) {
            do {
                replay = try await Self.inShortTask { [redis, keys] in
                    try await EventHistory.userReplay(redis: redis, keys: keys, userID: userID, after: resume, recentJobs: EventHub.recentJobsPerUser)
                }
            } catch {
                subscription.cancel()
                context.logger.warning("cannot read a user's events", metadata: ["error": "\(error)"])
                throw APIError.unavailable("events are unavailable right now")
            }
        }
        let start = TakeOnce(replay)
        let floor = subscription.floor
        return streamResponse(request, subscription, slot) { sink, writer in
            guard let replay = start.take() else { return }
            try await Self.pumpUser(replay: consume replay, floor: floor, sink: sink, writer: &writer)
        }
    }

    /// - Parameter floor: the last change the hub had handed out when this stream subscribed;
    ///   a catch-up after a gap can hand out older changes, which this stream never had to get.
    static func pumpUser(replay: consuming [JobChange], floor: EventSubscription.Floor?, sink: EventSink, writer: inout any ResponseBodyWriter) async throws {
        // The newest change sent per job; bounded (forgetting only risks a repeated change).
        var positions: [String: StreamID] = [:]
        func isNew(_ change: JobChange, live: Bool = true) -> Bool {
            if live, let floor, change.id.milliseconds < floor.id.milliseconds { return false }
            if let seen = positions[change.jobID], change.id <= seen { return false }
            if positions.count >= 10_000 { positions.removeAll(keepingCapacity: true) }
            positions[change.jobID] = change.id
            return true
        }
        var frames = [ServerSentEvent.retry(milliseconds: retryMilliseconds, comment: "connected")]
        for change in replay where isNew(change, live: false) {
            frames.append(change.frame)
        }
        // Only after the replay: the floor job's changes up to the floor may be exactly what a
        // reconnecting client missed. Live, nothing at or below the floor is sent again.
        if let floor { positions[floor.jobID] = max(positions[floor.jobID] ?? floor.id, floor.id) }
        try await write(&frames, to: &writer)
        frames = []
        var batch: [JobChange] = []
        while true {
            switch await sink.next(&batch) {
            case .heartbeat:
                try await writer.write(heartbeatFrame)
            case .changes:
                for change in batch where isNew(change) { frames.append(change.frame) }
                try await write(&frames, to: &writer)
            case .ended:
                try await writeGoodbye(sink, &writer)
                return
            }
        }
    }

    // MARK: - Streaming

    /// Runs `operation` in a child task and returns its result. The task that serves a stream
    /// keeps the memory of its deepest await (the async frames of a Redis call) for as long as
    /// the stream lasts; a child task gives it back when it ends.
    static func inShortTask<Value: Sendable>(_ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        try await withThrowingTaskGroup(of: Value.self) { group in
            group.addTask(operation: operation)
            for try await value in group { return value }
            throw CancellationError()
        }
    }

    /// After the sink ended: a short `retry:` so the client comes back (to another instance on
    /// shutdown; with `Last-Event-ID` when it fell behind).
    static func writeGoodbye(_ sink: EventSink, _ writer: inout any ResponseBodyWriter) async throws {
        switch sink.endReason {
        case .shutdown:
            try await writer.write(ServerSentEvent.retry(milliseconds: endRetryMilliseconds, comment: "shutting down; reconnect"))
        case .dropped:
            try await writer.write(ServerSentEvent.retry(milliseconds: endRetryMilliseconds, comment: "fell behind; reconnect with Last-Event-ID"))
        case .clientClosed, .completed, nil:
            break
        }
    }

    struct StreamClosed: Error {
        let reason: EventSink.EndReason
    }

    /// A `text/event-stream` response whose body runs `pump` until it returns, the client goes
    /// away, the stream falls behind (cut after `droppedGrace`, even in a blocked write) or the gateway shuts
    /// down (the pump says `retry:`; cut after `shutdownGrace`). The subscription ends with it.
    ///
    /// One child task writes (the pump; heartbeats come from the hub's shared tick); the body's
    /// own task waits for the sink to end and cancels the writer when the stream must be cut.
    func streamResponse(
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
                        case .shutdown:
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
    func caller(_ request: Request, _ context: ClapperRequestContext, for target: Target) throws -> String {
        if let token = request.uri.queryParameters.get("token") {
            guard let claims = signer.verify(token, now: Date()) else {
                throw APIError.unauthorized("the event token is invalid or expired", code: "invalid_token")
            }
            switch (claims.scope, target) {
            case (.user, _):
                return claims.userID
            case (.job(let tokenJob), .job(let jobID)) where tokenJob == jobID:
                return claims.userID
            case (.job, _):
                throw APIError(.forbidden, code: "forbidden", message: "this token opens the events of another job")
            }
        }
        guard let userID = context.userID else { throw APIError.unauthorized() }
        return userID
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
    init(configuration: ClapperConfiguration, redis: RedisClient, hub: EventHub, streams: StreamLimiter) {
        self.init(hub: hub, redis: redis, keys: JobKeys(), signer: EventTokenSigner(secret: configuration.webhookSecret), heartbeat: configuration.sseHeartbeat, streams: streams)
    }
}
