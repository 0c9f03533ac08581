import Fal
import Foundation

/// How often a task in flight at fal is asked for its progress (status with logs): pure
/// arithmetic, no I/O.
///
/// Progress rides the reconciler: a task's next check on the due set comes no later than
/// `gap(for:)` after the last, so the due set's atomic claim makes exactly one instance follow
/// each task, a dead instance's claims come back when their lease ends, and the number of fal
/// connections stays the reconciler's `concurrency`. A task far back in fal's queue moves
/// slowly, so it is asked less often: the gap grows with its position, up to `maxInterval`.
/// Each poll stores at most one change, however many log lines fal printed since the last.
public struct ProgressPolicy: Sendable, Hashable {
    /// The gap while the task runs or is next in line (position 0 or 1).
    public var interval: Duration
    /// The longest gap (a task far back in the queue).
    public var maxInterval: Duration

    public init(interval: Duration = .seconds(2), maxInterval: Duration = .seconds(30)) {
        self.interval = interval
        self.maxInterval = max(interval, maxInterval)
    }

    /// The gap before the next progress poll of `task`; nil when it is not in flight at fal.
    public func gap(for task: JobTask) -> Duration? {
        guard task.falRequestID != nil, task.status == .queued || task.status == .running else { return nil }
        return gap(queuePosition: task.status == .queued ? (task.progress?.queuePosition ?? 0) : 0)
    }

    /// The gap for a task at `queuePosition` in fal's queue (0 while it runs).
    public func gap(queuePosition: Int) -> Duration {
        // `interval × position`, computed so a huge position from fal cannot overflow.
        let limit = max(1, Int(maxInterval / interval))
        return min(maxInterval, interval * max(1, min(queuePosition, limit)))
    }

    /// When to ask again after a look at `now`: no later than `next` (the reconcile policy's own
    /// next check), and no later than the progress gap.
    public func next(for task: JobTask, after now: Date, notLaterThan next: Date) -> Date {
        guard let gap = gap(for: task) else { return next }
        return min(next, now.addingTimeInterval(gap.seconds))
    }
}

