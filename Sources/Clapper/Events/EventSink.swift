import NIOCore
import Synchronization

/// What one stream of events receives from the hub: a bounded buffer of changes, heartbeats, and
/// how it ended. When a change does not fit in the buffer the subscriber is ended as `.dropped`
/// instead of the buffer growing: the client reconnects with `Last-Event-ID` and replays what it
/// missed from Redis.
///
/// One lock and at most two waiters: the stream's writer (`next`) and the task watching for the
/// end (`ended()`). The writer takes every pending change at once, so a stream that fell a few
/// changes behind writes them in one write and one flush. Heartbeats come from the hub's shared
/// tick (`heartbeat(now:)`), sent when the writer has been idle for `heartbeatInterval`: no timer
/// and no task per stream.
final class EventSink: EventTarget {
    /// What `next` woke up for.
    enum Wake: Sendable {
        /// The batch holds changes, oldest first.
        case changes
        /// Nothing was written for a heartbeat interval.
        case heartbeat
        /// The sink ended and nothing is left to write (`endReason` says why).
        case ended
    }

    private struct State {
        var pending: [JobChange] = []
        /// Changes taken by the writer and not yet written: they count against the buffer.
        var inFlight = 0
        var heartbeatDue = false
        /// When the writer last started waiting (after its last write).
        var idleSince: ContinuousClock.Instant?
        var writer: UnsafeContinuation<Void, Never>?
        var watcher: UnsafeContinuation<StreamEndReason, Never>?
        var reason: StreamEndReason?
    }

    let id: Int
    let jobID: String?
    let userID: String?
    let heartbeatInterval: Duration
    private let bufferSize: Int
    private let state = Mutex(State())


    init(id: Int, jobID: String?, userID: String?, bufferSize: Int, heartbeat: Duration) {
        self.id = id
        self.jobID = jobID
        self.userID = userID
        self.bufferSize = bufferSize
        self.heartbeatInterval = heartbeat
    }

    /// Hands a change over; false when the buffer is full and the sink was ended as `.dropped`.
    func deliver(_ change: JobChange) -> Bool {
        enum Outcome { case queued(UnsafeContinuation<Void, Never>?), ignored, full }
        let outcome = state.withLock { state -> Outcome in
            guard state.reason == nil else { return .ignored }
            guard state.pending.count + state.inFlight < bufferSize else { return .full }
            state.pending.append(change)
            defer { state.writer = nil }
            return .queued(state.writer)
        }
        switch outcome {
        case .queued(let writer):
            writer?.resume()
            return true
        case .ignored:
            return true
        case .full:
            end(.dropped)
            return false
        }
    }

    /// The hub's heartbeat tick: wakes the writer for a heartbeat when it has been idle (waiting,
    /// nothing written) for `heartbeatInterval`. A busy writer needs none.
    func heartbeat(now: ContinuousClock.Instant) {
        let writer = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            guard state.reason == nil, let since = state.idleSince, state.writer != nil, now - since >= heartbeatInterval else { return nil }
            state.heartbeatDue = true
            defer { state.writer = nil }
            return state.writer
        }
        writer?.resume()
    }

    /// Waits for something to write. On `.changes`, `batch` holds every pending change (its
    /// previous contents, already written, are dropped; its storage is reused). Buffered changes
    /// come before `.ended`. Only one task calls this (the stream's writer). Cancelling that task
    /// ends the sink as `.completed`.
    func next(_ batch: inout [JobChange]) async -> Wake {
        batch.removeAll(keepingCapacity: true)
        while true {
            let wake = state.withLock { state -> Wake? in
                state.inFlight = 0
                if !state.pending.isEmpty {
                    swap(&state.pending, &batch)
                    state.inFlight = batch.count
                    return .changes
                }
                if state.heartbeatDue {
                    state.heartbeatDue = false
                    return .heartbeat
                }
                return state.reason == nil ? nil : .ended
            }
            if let wake { return wake }
            await withTaskCancellationHandler {
                // Resumed exactly once: by whoever takes it out of the state under the lock
                // (deliver, heartbeat, end), or here at once when there is already news.
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    let now = ContinuousClock.now
                    let waiting = state.withLock { state -> Bool in
                        guard state.pending.isEmpty, !state.heartbeatDue, state.reason == nil else { return false }
                        state.idleSince = now
                        state.writer = continuation
                        return true
                    }
                    if !waiting { continuation.resume() }
                }
            } onCancel: {
                self.end(.completed)
            }
        }
    }

    /// Waits until the sink ends, and says why. Cancelling the waiting task ends it as `.completed`.
    func ended() async -> StreamEndReason {
        await withTaskCancellationHandler {
            // Resumed exactly once, like the writer's continuation in `next`.
            await withUnsafeContinuation { (continuation: UnsafeContinuation<StreamEndReason, Never>) in
                let reason = state.withLock { state -> StreamEndReason? in
                    if state.reason == nil { state.watcher = continuation }
                    return state.reason
                }
                if let reason { continuation.resume(returning: reason) }
            }
        } onCancel: {
            self.end(.completed)
        }
    }

    /// Ends the sink; the first reason wins. Buffered changes can still be read.
    func end(_ reason: StreamEndReason) {
        let waiters = state.withLock { state -> (UnsafeContinuation<Void, Never>?, UnsafeContinuation<StreamEndReason, Never>?)? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            defer {
                state.writer = nil
                state.watcher = nil
            }
            return (state.writer, state.watcher)
        }
        guard let waiters else { return }
        waiters.0?.resume()
        waiters.1?.resume(returning: reason)
    }

    var endReason: StreamEndReason? { state.withLock { $0.reason } }
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
