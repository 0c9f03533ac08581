import NIOCore

/// Why an event stream ended.
enum StreamEndReason: Sendable, Hashable {
    /// It fell behind: its buffer was full, or its channel stopped taking writes.
    case dropped
    /// The gateway is shutting down.
    case shutdown
    /// The client closed the connection.
    case clientClosed
    /// The stream ended by itself (job finished) or was cancelled.
    case completed
    /// The token the stream was opened with expired: it says so (`event: token-expired`) and ends.
    case tokenExpired
}

/// One event stream as the hub sees it: where the changes of a job (or of a user's jobs) go.
///
/// Two kinds: `ChannelStream`, written on its channel's event loop (the hub hands it changes and
/// heartbeats on that loop, batched per loop), and `EventSink`, a buffer drained by a task.
protocol EventTarget: AnyObject, Sendable {
    var id: Int { get }
    var jobID: String? { get }
    var userID: String? { get }
    /// A heartbeat goes out after this long without a write.
    var heartbeatInterval: Duration { get }
    /// The loop `deliver` and `heartbeat` must be called on, or nil: any thread.
    var eventLoop: (any EventLoop)? { get }
    /// Hands a change over; false when the target could not take it and was ended as `.dropped`
    /// (the hub then lets go of it). A target that removes itself returns true.
    func deliver(_ change: JobChange) -> Bool
    /// The hub's shared tick: a heartbeat if nothing was written for the heartbeat interval.
    func heartbeat(now: ContinuousClock.Instant)
    /// Ends the stream (any thread); the first reason wins.
    func end(_ reason: StreamEndReason)
}
