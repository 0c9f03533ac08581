import NIOCore

/// What an event stream writes, without I/O: the frames it opens with, and the frames each change
/// handed to it adds. Both ways a stream is written use it: on its channel's event loop
/// (`ChannelStream`, the usual way) and from a task through a response body writer (a stream
/// asked for on a connection that had already served a request).
///
/// A job's stream (`GET /v1/jobs/{id}/events`) sends the changes after the last one it sent and
/// ends with `done` after the change that finishes the job. A user's stream (`GET /v1/events`)
/// sends each job's changes newer than the last one it sent of that job, and, live, nothing older
/// than the hub's floor when it subscribed (a catch-up after a gap can hand out older changes,
/// which this stream never had to get).
struct StreamPump: Sendable {
    /// The job of a job's stream; nil for a user's stream.
    let jobID: String?
    /// Frames as HTTP/1.1 chunks (written straight to a channel) or bare (a body writer chunks them).
    let chunked: Bool
    /// A job's stream: the newest change sent.
    private var position: StreamID?
    /// A user's stream: the newest change sent per job; bounded (forgetting only risks a repeat).
    private var positions: [String: StreamID] = [:]
    /// The job's version after the newest change sent (a job's stream), or per job (a user's): a
    /// change handed out by its writer ahead of the channel (`JobChange.isLocal`) is sent only when
    /// it is the next version, so a change still on its way through the channel is never skipped.
    private var version: Int?
    private var versions: [String: Int] = [:]
    private let floor: EventSubscription.Floor?
    /// A job's stream has written `done`: nothing more is written.
    private(set) var isFinished = false

    static let positionsLimit = 10_000

    /// A job's stream, and what it opens with: `retry:`, then the snapshot or the changes after
    /// `Last-Event-ID`, and `done` at once if the job is already finished.
    static func job(jobID: String, history: consuming EventHistory, chunked: Bool) -> (StreamPump, [ByteBuffer]) {
        var pump = StreamPump(jobID: jobID, chunked: chunked, position: history.lastID, floor: nil)
        let head = JobChange.Head(view: history.view)
        pump.version = head?.version
        var frames = [ServerSentEvent.retry(milliseconds: EventsController.retryMilliseconds)]
        switch history.start {
        case .snapshot:
            frames.append(ServerSentEvent.frame(event: "snapshot", id: history.lastID?.description, data: history.view))
        case .replay(let entries):
            for entry in entries {
                frames.append(ServerSentEvent.frame(event: "job", id: entry.id.description, data: entry.view))
            }
        }
        // The view was read with the entries: it is the state after the last one.
        if let head, head.isFinished {
            frames.append(doneFrame(jobID: jobID, status: head.status))
            pump.isFinished = true
        }
        return (pump, pump.encode(frames))
    }

    /// A user's stream, and what it opens with: `retry:`, then the replayed changes it has not seen.
    static func user(replay: consuming [JobChange], floor: EventSubscription.Floor?, chunked: Bool) -> (StreamPump, [ByteBuffer]) {
        var pump = StreamPump(jobID: nil, chunked: chunked, position: nil, floor: floor)
        var frames = [ServerSentEvent.retry(milliseconds: EventsController.retryMilliseconds, comment: "connected")]
        for change in replay where pump.isNew(change, live: false) {
            frames.append(change.frame)
        }
        // Only after the replay: the floor job's changes up to the floor may be exactly what a
        // reconnecting client missed. Live, nothing at or below the floor is sent again.
        if let floor { pump.positions[floor.jobID] = max(pump.positions[floor.jobID] ?? floor.id, floor.id) }
        return (pump, pump.encode(frames))
    }

    private init(jobID: String?, chunked: Bool, position: StreamID?, floor: EventSubscription.Floor?) {
        self.jobID = jobID
        self.chunked = chunked
        self.position = position
        self.floor = floor
    }

    /// Appends what `change` adds to the stream (nothing if it was sent already); true once the
    /// stream is finished (a job's `done` is among the frames).
    mutating func take(_ change: JobChange, into frames: inout [ByteBuffer]) -> Bool {
        guard !isFinished else { return true }
        guard let jobID else {
            if isNew(change, live: true) { frames.append(chunked ? change.chunk : change.frame) }
            return false
        }
        // Already sent (read with the snapshot or replay, or handed out twice by a catch-up, or by
        // its writer and then the channel).
        if let position, change.id <= position { return false }
        if change.isLocal, !Self.follows(version, change.version) { return false }
        position = change.id
        version = change.version
        frames.append(chunked ? change.chunk : change.frame)
        if change.isFinished {
            frames.append(encode(Self.doneFrame(jobID: jobID, status: change.status)))
            isFinished = true
        }
        return isFinished
    }

    private mutating func isNew(_ change: JobChange, live: Bool) -> Bool {
        if live, let floor, change.id.milliseconds < floor.id.milliseconds { return false }
        if let seen = positions[change.jobID], change.id <= seen { return false }
        if change.isLocal, !Self.follows(versions[change.jobID], change.version) { return false }
        if positions.count >= Self.positionsLimit {
            positions.removeAll(keepingCapacity: true)
            versions.removeAll(keepingCapacity: true)
        }
        positions[change.jobID] = change.id
        versions[change.jobID] = change.version
        return true
    }

    /// `next` is the version right after `last` (a job's first version follows nothing sent).
    private static func follows(_ last: Int?, _ next: Int?) -> Bool {
        guard let next else { return false }
        return (last ?? 0) == next - 1
    }

    // MARK: - Frames

    /// Frames as this stream writes them: one chunk for all of them, or as they are.
    func encode(_ frames: [ByteBuffer]) -> [ByteBuffer] {
        chunked ? [HTTPChunk.wrap(frames)] : frames
    }

    func encode(_ frame: ByteBuffer) -> ByteBuffer {
        chunked ? HTTPChunk.wrap(frame) : frame
    }

    static func doneFrame(jobID: String, status: String) -> ByteBuffer {
        ServerSentEvent.frame(event: "done", data: Array(#"{"jobId":\#(JobRepository.jsonString(jobID)),"status":\#(JobRepository.jsonString(status))}"#.utf8))
    }

    /// The heartbeat comment.
    static let heartbeat = ServerSentEvent.comment("heartbeat")
    static let heartbeatChunk = HTTPChunk.wrap(heartbeat)

    /// What a stream says when it ends for `reason`: a short `retry:` so the client comes back (to
    /// another instance on shutdown; with `Last-Event-ID` when it fell behind), or nothing.
    static func goodbye(_ reason: StreamEndReason) -> ByteBuffer? {
        switch reason {
        case .shutdown: shutdownGoodbye
        case .dropped: droppedGoodbye
        case .tokenExpired: tokenExpiredGoodbye
        case .clientClosed, .completed: nil
        }
    }

    /// A named event a client acts on (fetch a new token from `renew`, reconnect with
    /// `Last-Event-ID`) instead of meeting a bare 401 on its next reconnect.
    private static let tokenExpiredGoodbye: ByteBuffer = {
        var frame = ServerSentEvent.frame(event: "token-expired", data: Array(#"{"renew":"/v1/events/token"}"#.utf8))
        frame.writeImmutableBuffer(ServerSentEvent.retry(milliseconds: EventsController.endRetryMilliseconds))
        return frame
    }()

    private static let shutdownGoodbye = ServerSentEvent.retry(milliseconds: EventsController.endRetryMilliseconds, comment: "shutting down; reconnect")
    private static let droppedGoodbye = ServerSentEvent.retry(milliseconds: EventsController.endRetryMilliseconds, comment: "fell behind; reconnect with Last-Event-ID")
}
