import NIOCore
import Synchronization

/// Changes on their way to the channel streams of one event loop.
///
/// A change for a few streams, handed over on their loop with nothing queued (a catch-up, or the
/// hub's tracing path, which run in tasks on the loops), is written and flushed at once. Anything
/// else (every live change from the hub's subscription thread) is queued, and the loop drains the
/// queue in one pass: every queued change written to its streams in order, then one flush per
/// stream. When changes come faster than the loop writes them (one job watched by thousands), each
/// stream gets all that piled up in one `writev` instead of one syscall a change.
final class LoopDelivery: Sendable {
    let loop: any EventLoop
    private let inbox = Mutex(Inbox())

    private struct Inbox {
        var items: [(change: JobChange, streams: [ChannelStream], copy: Bool)] = []
        var drainScheduled = false
    }

    /// At most this many streams are written at once on the caller's turn of the loop; more are
    /// queued, so the caller (the hub's reader) goes on to the next change while they are written.
    static let inlineLimit = 16

    init(loop: any EventLoop) {
        self.loop = loop
    }

    /// Hands `change` to `streams` (all on this loop). `copy`: the loop writes its own copy of the
    /// change's bytes (made on the loop), so its streams count references on memory no other core
    /// writes to.
    func deliver(_ change: JobChange, to streams: [ChannelStream], copy: Bool) {
        if streams.count <= Self.inlineLimit, loop.inEventLoop, inbox.withLock({ $0.items.isEmpty }) {
            for stream in streams where stream.write(change) { stream.flush() }
            return
        }
        let schedule = inbox.withLock { inbox in
            inbox.items.append((change, streams, copy))
            defer { inbox.drainScheduled = true }
            return !inbox.drainScheduled
        }
        guard schedule else { return }
        loop.execute { self.drain() }
    }

    /// On the loop: writes every queued change, then flushes each stream written to once.
    private func drain() {
        let items = inbox.withLock { inbox in
            defer {
                inbox.items = []
                inbox.drainScheduled = false
            }
            return inbox.items
        }
        var owed: [ChannelStream] = []
        for item in items {
            let change = item.copy ? JobChange(copying: item.change) : item.change
            for stream in item.streams where stream.write(change) { owed.append(stream) }
        }
        for stream in owed { stream.flush() }
    }
}
