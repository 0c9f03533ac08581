/// Something that happened to one task: a step Clapper took, a submit response, a status poll,
/// a webhook, the reconciler's verdict. Applied with `JobTask.apply(_:at:)`.
public enum TaskEvent: Sendable, Hashable {
    /// Clapper is about to send the submit request. Recorded (atomically) before the request goes
    /// out, so a crash recovery can tell "surely never sent" (no `submitStartedAt`) from
    /// "outcome unknown". Only applies to a pending task that has not started a submit; a repeat
    /// is ignored, which is what makes a submission happen once.
    case submitStarted
    /// The submit surely never reached fal (refused connection, rate limited past the retries):
    /// the task is back to "no submit started", so sending it again later is safe.
    case submitAbandoned
    /// fal's submit response.
    case accepted(requestID: String, statusURL: String?, responseURL: String?, cancelURL: String?)
    case queued
    case running
    /// Finished with a result; `mediaURL` extracted from fal's output by the model catalog.
    case completed(mediaURL: String?)
    case failed(TaskError)
    case canceled
    case timedOut
    /// Start over after `failed` / `timed_out`: back to `pending`, the old request id kept in
    /// `previousRequestIDs`. Ignored from any other status.
    case retry
}

/// What an event did to a task or job.
public enum TransitionOutcome: Sendable, Hashable {
    case changed
    /// Nothing changed (a repeat, a late event, a backwards move); `reason` is for logs and metrics.
    case ignored(reason: String)

    public var isChanged: Bool {
        if case .changed = self { return true }
        return false
    }
}
