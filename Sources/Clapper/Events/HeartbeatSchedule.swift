import NIOCore

/// When the channel streams of one event loop are next due a heartbeat: a min-heap of due times,
/// and one timer on the loop armed for the earliest. Confined to its loop (`NIOLoopBound`).
///
/// A stream is queued when it opens, for one heartbeat interval later. When its entry comes up,
/// the stream sends a heartbeat if nothing was written for its interval, and says when it is due
/// next (its last write plus its interval); a stream that ended says nothing and falls out. So a
/// tick looks only at the streams due about now, not at every stream. (The shared tick this
/// replaced walked all of an instance's streams, under the hub's lock, every second: with 10,000
/// streams, one stall of each loop a second, in the way of whatever change came then.)
final class HeartbeatSchedule {
    private struct Entry {
        let due: ContinuousClock.Instant
        let stream: ChannelStream
    }

    private let loop: any EventLoop
    private var heap: [Entry] = []
    private var timer: (due: ContinuousClock.Instant, task: Scheduled<Void>)?

    /// Heartbeats due within this much after a pass of the timer go out in that pass (that much
    /// early at most).
    static let batching: Duration = .milliseconds(20)

    init(loop: any EventLoop) {
        self.loop = loop
    }

    /// Streams queued (ended ones included until they come up).
    var count: Int { heap.count }

    /// Queues `stream` for a heartbeat check at `due`. On the loop.
    func add(_ stream: ChannelStream, due: ContinuousClock.Instant) {
        push(Entry(due: due, stream: stream))
        arm()
    }

    /// Checks every stream due by now (plus the batching slack) and arms the timer for the next.
    private func fire() {
        timer = nil
        let now = ContinuousClock.now
        let horizon = now + Self.batching
        while let first = heap.first, first.due <= horizon {
            popFirst()
            // After the horizon at the earliest, so a pass always ends (an interval shorter than the
            // batching slack would otherwise come due again within this pass).
            if let next = first.stream.heartbeatIfIdle(by: horizon, now: now) { push(Entry(due: max(next, horizon + .nanoseconds(1)), stream: first.stream)) }
        }
        arm()
    }

    private func arm() {
        guard let first = heap.first else {
            timer?.task.cancel()
            timer = nil
            return
        }
        if let timer, timer.due <= first.due { return }
        timer?.task.cancel()
        let delay = max(first.due - .now, .zero)
        let task = loop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) { [self] in fire() }
        timer = (first.due, task)
    }

    // MARK: - Binary heap on `due`

    private func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].due < heap[parent].due else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private func popFirst() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            let right = left + 1
            let smaller = right < heap.count && heap[right].due < heap[left].due ? right : left
            guard heap[smaller].due < heap[parent].due else { return }
            heap.swapAt(smaller, parent)
            parent = smaller
        }
    }
}
