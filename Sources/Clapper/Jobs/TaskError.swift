/// Why a task failed, was canceled or timed out, as stored with the task and shown to clients.
public struct TaskError: Codable, Hashable, Sendable {
    /// Machine-readable: `fal_error`, `validation`, `payload_error`, `result_expired`, `submit_failed`,
    /// `submit_outcome_unknown`, `timed_out`, `video_failed`, …
    public var code: String
    /// Human text, e.g. fal's error message.
    public var message: String
    /// fal's raw error payload, kept as received (JSON text), when there is one.
    public var detail: String?

    public init(code: String, message: String, detail: String? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    /// The audio was never generated because the video it follows (after-video mode) did not complete.
    public static let videoFailed = TaskError(
        code: "video_failed",
        message: "the video did not complete"
    )

    /// The merge was never submitted because the video or the audio did not complete.
    public static let mergeInputsMissing = TaskError(
        code: "merge_inputs_missing",
        message: "the video or the audio did not complete, so there is nothing to merge"
    )

    /// Code of a task whose submit may or may not have reached fal and got no recorded answer
    /// before its model's deadline. fal may still have it: a later webhook replaces this error.
    public static let submitOutcomeUnknownCode = "submit_outcome_unknown"
    /// Code of a task still queued at fal when the job's `startTimeoutSeconds` passed (never resent).
    public static let startTimeoutCode = "start_timeout"

    /// The task did not finish in the time its model is given.
    public static func timedOut(_ kind: TaskKind) -> TaskError {
        TaskError(code: "timed_out", message: "\(kind.rawValue) did not finish in time")
    }
}
