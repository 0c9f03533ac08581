import Synchronization

/// What one stream of events receives from the hub: a bounded buffer of changes (and heartbeat
/// ticks), and how it ended. When a change does not fit in the buffer the subscriber is ended as
/// `.dropped` instead of the buffer growing: the client reconnects with `Last-Event-ID` and
/// replays what it missed from Redis.
final class EventSink: Sendable {
    enum Item: Sendable {
        case change(JobChange)
        case heartbeat
    }

    enum EndReason: Sendable, Hashable {
        /// It fell behind: its buffer was full.
        case dropped
        /// The gateway is shutting down.
        case shutdown
        /// The client closed the connection.
        case clientClosed
        /// The stream ended by itself (job finished) or was cancelled.
        case completed
    }

    let id: Int
    let jobID: String?
    let userID: String?
    let items: AsyncStream<Item>
    /// Yields the end reason once, when the sink ends.
    let ended: AsyncStream<EndReason>
    private let itemsContinuation: AsyncStream<Item>.Continuation
    private let endedContinuation: AsyncStream<EndReason>.Continuation
    private let reason = Mutex<EndReason?>(nil)

    init(id: Int, jobID: String?, userID: String?, bufferSize: Int) {
        self.id = id
        self.jobID = jobID
        self.userID = userID
        (items, itemsContinuation) = AsyncStream.makeStream(of: Item.self, bufferingPolicy: .bufferingOldest(bufferSize))
        (ended, endedContinuation) = AsyncStream.makeStream(of: EndReason.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Hands a change over; false when the buffer is full and the sink was ended as `.dropped`.
    func deliver(_ change: JobChange) -> Bool {
        switch itemsContinuation.yield(.change(change)) {
        case .enqueued: return true
        case .terminated: return true
        case .dropped:
            end(.dropped)
            return false
        @unknown default: return true
        }
    }

    /// A heartbeat tick; dropped silently when the buffer is full (the stream is busy anyway).
    func tick() {
        _ = itemsContinuation.yield(.heartbeat)
    }

    /// Ends the sink; the first reason wins. Buffered changes can still be read.
    @discardableResult
    func end(_ reason: EndReason) -> Bool {
        let first = self.reason.withLock { current -> Bool in
            guard current == nil else { return false }
            current = reason
            return true
        }
        guard first else { return false }
        endedContinuation.yield(reason)
        endedContinuation.finish()
        itemsContinuation.finish()
        return true
    }

    var endReason: EndReason? { reason.withLock { $0 } }
}

/// A local subscription to the hub, held by one stream. Letting go of it (or `cancel()`)
/// removes it from the hub, so a response that is never written leaks nothing.
final class EventSubscription: Sendable {
    /// The newest change the hub had handed out when this subscription was made.
    struct Floor: Sendable {
        let jobID: String
        let id: StreamID
    }

    let sink: EventSink
    let floor: Floor?
    private let hub: EventHub

    init(sink: EventSink, floor: Floor?, hub: EventHub) {
        self.sink = sink
        self.floor = floor
        self.hub = hub
    }

    func cancel() {
        sink.end(.completed)
        hub.remove(sink)
    }

    deinit {
        cancel()
    }
}
