import Foundation

/// A follow-up the I/O layer performs after it stored a transition.
public enum JobAction: Sendable, Hashable {
    /// Submit this task to fal now (apply `.submitStarted` atomically first; if that is ignored,
    /// another instance got there first and nothing is sent).
    case submit(TaskKind)
    /// Ask fal to cancel this task's request (its `cancelURL`).
    case cancelAtFal(TaskKind)
}

/// What `Job.apply` / `Job.cancel` did and what must follow.
public struct JobTransition: Sendable, Hashable {
    public var outcome: TransitionOutcome
    public var actions: [JobAction]

    public init(outcome: TransitionOutcome, actions: [JobAction] = []) {
        self.outcome = outcome
        self.actions = actions
    }

    public static func ignored(_ reason: String) -> JobTransition {
        JobTransition(outcome: .ignored(reason: reason))
    }
}

extension Job {
    /// Applies `event` to the task of `kind` at `now`, then the job-level rules:
    /// - after-video mode: when the video becomes completed and the audio is still pending with no
    ///   submit started, the transition carries `.submit(.audio)`. A repeated video completion is
    ///   ignored, so the action comes once per stored change (the store's compare-and-set, plus
    ///   `.submitStarted` being ignored on a repeat, make the submission happen once);
    /// - after-video mode: when the video fails, is canceled or times out, the unfinished audio is
    ///   canceled in the same transition with error `video_failed` (plus `.cancelAtFal(.audio)` if it
    ///   had somehow been accepted by fal); a `.retry` of the video brings such an audio back to
    ///   `pending`, to follow the new attempt; so does a late video result (fal finished a video that
    ///   was given up as `timed_out` or `submit_outcome_unknown`), with `.submit(.audio)`;
    /// - `.retry` is ignored on a canceled job;
    /// - a submit response (`.accepted`) that arrives for a task already canceled asks
    ///   `.cancelAtFal` for it, so a cancel racing a submit still reaches fal.
    /// - the merge (`feature.merge`) is submitted once video and audio both completed, canceled
    ///   `merge_inputs_missing` when either ended otherwise, and follows a retried input again
    ///   (`settleMerge`).
    /// `updatedAt` moves on every change; `version` is the store's business.
    public mutating func apply(_ kind: TaskKind, _ event: TaskEvent, at now: Date) -> JobTransition {
        guard var task = task(kind) else { return .ignored("no \(kind.rawValue) task in this job") }
        if canceled, event == .retry { return .ignored("job canceled") }
        let before = task
        let outcome = task.apply(event, at: now)
        guard outcome.isChanged else { return JobTransition(outcome: outcome) }
        set(task)
        updatedAt = now

        var actions: [JobAction] = []
        if case .accepted = event, task.status == .canceled, before.falRequestID == nil {
            actions.append(.cancelAtFal(kind))
        }
        let lateVideoResult = kind == .video && before.status.isTerminal && task.status == .completed
        if kind == .video, event == .retry || lateVideoResult, var audio, audio.status == .canceled,
           audio.error?.code == TaskError.videoFailed.code, audio.submitStartedAt == nil, audio.falRequestID == nil {
            // The audio was only dropped because the video failed: it follows the retried video
            // again, or, when fal's result for a video given up lands late, is submitted now.
            audio.status = .pending
            audio.error = nil
            audio.completedAt = nil
            self.audio = audio
            if lateVideoResult, !canceled { actions.append(.submit(.audio)) }
        } else if kind == .video, audioMode == .afterVideo, var audio, before.status != task.status {
            if task.status == .completed, !canceled, audio.status == .pending, audio.submitStartedAt == nil {
                actions.append(.submit(.audio))
            } else if task.status.isTerminal, task.status != .completed, !audio.status.isTerminal {
                if audio.falRequestID != nil { actions.append(.cancelAtFal(.audio)) }
                _ = audio.apply(.canceled, at: now)
                audio.error = .videoFailed
                self.audio = audio
            }
        }
        if kind != .merge { settleMerge(at: now, actions: &actions) }
        return JobTransition(outcome: .changed, actions: actions)
    }

    /// The merge follows its inputs: submitted (`.submit(.merge)`) once video and audio both
    /// completed; canceled with `merge_inputs_missing` when either ended otherwise (the job is
    /// then finished without a merged file); back to `pending` when such an input is retried or
    /// its late result lands, so it follows again. Never submitted on a canceled job.
    private mutating func settleMerge(at now: Date, actions: inout [JobAction]) {
        guard var merge else { return }
        let inputs = [video] + [audio].compactMap { $0 }
        if merge.status == .canceled, merge.error?.code == TaskError.mergeInputsMissing.code, merge.submitStartedAt == nil,
           merge.falRequestID == nil, !canceled, !inputs.contains(where: { $0.status.isTerminal && $0.status != .completed }) {
            merge.status = .pending
            merge.error = nil
            merge.completedAt = nil
        }
        if merge.status == .pending, merge.submitStartedAt == nil, !canceled {
            if mergeInputsReady {
                actions.append(.submit(.merge))
            } else if inputs.contains(where: { $0.status.isTerminal && $0.status != .completed }) {
                _ = merge.apply(.canceled, at: now)
                merge.error = .mergeInputsMissing
            }
        }
        self.merge = merge
    }

    /// Job-level cancel: every unfinished task becomes `canceled`; `.cancelAtFal` for those fal
    /// accepted. A submit in flight (no request id yet) is canceled here and its late `.accepted`
    /// asks for `.cancelAtFal` then. On a finished job nothing changes (`.ignored`: answer 409).
    public mutating func cancel(at now: Date) -> JobTransition {
        guard !isFinished else { return .ignored("job already \(status.rawValue)") }
        var actions: [JobAction] = []
        for var task in tasks where !task.status.isTerminal {
            if task.falRequestID != nil { actions.append(.cancelAtFal(task.kind)) }
            _ = task.apply(.canceled, at: now)
            set(task)
        }
        canceled = true
        updatedAt = now
        return JobTransition(outcome: .changed, actions: actions)
    }

    private mutating func set(_ task: JobTask) {
        switch task.kind {
        case .video: video = task
        case .audio: audio = task
        case .merge: merge = task
        }
    }
}
