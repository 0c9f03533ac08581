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
/// Two kinds, and only these: `ChannelStream`, written on its channel's event loop (its loop's
/// `LoopDelivery` hands it changes, its `HeartbeatSchedule` heartbeats), and `EventSink`, a buffer
/// drained by a task (changes handed over from any thread; the hub's shared tick for heartbeats).
protocol EventTarget: AnyObject, Sendable {
    var id: Int { get }
    var jobID: String? { get }
    var userID: String? { get }
    /// A heartbeat goes out after this long without a write.
    var heartbeatInterval: Duration { get }
    /// Ends the stream (any thread); the first reason wins.
    func end(_ reason: StreamEndReason)
}
