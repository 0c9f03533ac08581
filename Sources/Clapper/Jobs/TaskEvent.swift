/// Something that happened to one task: a step Clapper took, a submit response, a status poll,
/// a webhook, the reconciler's verdict. Applied with `JobTask.apply(_:at:)`.
public enum TaskEvent: Sendable, Hashable {
    /// Clapper is about to send the submit request. Recorded (atomically) before the request goes
    /// out, so a crash recovery can tell "surely never sent" (no `submitStartedAt`) from
    /// "outcome unknown". Only applies to a pending task that has not started a submit; a repeat
    /// is ignored, which is what makes a submission happen once. `attempt` names the writer (a
    /// random id per try): a caller whose reply from Redis was lost finds its own mark on a fresh
    /// read and knows it won, instead of taking it for another writer's.
    case submitStarted(attempt: String)
    /// The submit of `attempt` surely never reached fal (refused connection, rate limited past the
    /// retries, or its mark could not be confirmed): the task is back to "no submit started", so
    /// sending it again later is safe. Ignored unless `attempt` is the task's current mark.
    case submitAbandoned(attempt: String)
    /// No slot at fal is free (`CLAPPER_FAL_CONCURRENCY`): the task waits in Clapper's line, at
    /// `position` when known. Only a pending task with no submit started takes it; the submit's
    /// mark ends the wait.
    case waiting(position: Int?)
    /// fal's submit response; `traceContext`: the submit span's `traceparent` (tracing on).
    case accepted(requestID: String, statusURL: String?, responseURL: String?, cancelURL: String?, traceContext: String? = nil)
    case queued
    case running
    /// fal's status with logs while the task is queued or running: its queue position and the
    /// newest log lines. Changes the task only when that differs from what is stored (a running
    /// task keeps no position); ignored on a task that is not at fal or has ended.
    case progress(TaskProgress)
    /// Finished with a result; `mediaURL` extracted from fal's output by the model catalog.
    /// Also lands on a task given up without fal's word (`timed_out`, `submit_outcome_unknown`):
    /// a result fal made and billed is delivered, not dropped.
    case completed(mediaURL: String?)
    /// Finished with the result of an earlier task of the same model and input (the result
    /// cache): completed without a fal request, marked `cached`. Only a pending task takes it.
    case reused(mediaURL: String)
    case failed(TaskError)
    /// The completed task's media was copied into the operator's bucket (media custody); `url`
    /// is the object's URL as handed out (unsigned when URLs are presigned on read). Only a
    /// completed task with media and no stored copy or store error takes it.
    case stored(url: String)
    /// The copy into the bucket failed for good (media custody); fails nothing else.
    case storeFailed(TaskError)
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
