import Foundation

/// One request to fal (the video or the audio of a job) and the pure rules of its lifecycle.
///
/// A task only moves forward (`pending` < `queued` < `running` < terminal). A late or repeated
/// event never moves a finished task and never moves a task back: `apply` reports it as
/// `.ignored(reason:)` and leaves the task untouched, so the store can skip the write and
/// the version does not grow.
public struct JobTask: Codable, Sendable, Hashable {
    public var kind: TaskKind
    /// fal model id, e.g. `fal-ai/ltx-video-13b-distilled`.
    public var model: String
    public var status: TaskStatus
    public var falRequestID: String?
    public var statusURL: String?
    public var responseURL: String?
    public var cancelURL: String?
    /// The generated media, extracted from fal's output.
    public var mediaURL: String?
    public var error: TaskError?
    /// Set (in the same atomic step) just before Clapper sends the submit request.
    public var submitStartedAt: Date?
    /// Who set `submitStartedAt`: the random id of that try (see `TaskEvent.submitStarted`).
    public var submitAttempt: String?
    /// When the last submit was started (kept when it is abandoned): a task is never given up
    /// for want of a submit unless one was tried after it became due.
    public var lastTriedAt: Date?
    /// When the task last became due for a submit, where that is not the job's creation: the
    /// video's completion for an after-video audio, the time of a `.retry`.
    public var dueAt: Date?
    /// When fal accepted the submit.
    public var submittedAt: Date?
    /// When the task reached a terminal state.
    public var completedAt: Date?
    /// Request ids of earlier attempts (kept across `.retry`), so their late webhooks can be told apart.
    public var previousRequestIDs: [String]
    /// How many submits were started for this task (each `.submitStarted` adds one).
    public var attempts: Int
    /// What fal will charge for it by the catalog's price at creation (seconds × price a second).
    public var estimatedCost: MicroUSD?
    /// Completed from the result cache: no request was sent to fal.
    public var cached: Bool?
    /// When Clapper first saw it running at fal (a status poll); nil when it was never seen
    /// running (a webhook can finish a task straight from the queue).
    public var startedAt: Date?
    /// Queue position and the last log lines from fal's status (`.progress`); nil when none.
    public var progress: TaskProgress?
    /// Waiting in Clapper's own line for a slot at fal (`CLAPPER_FAL_CONCURRENCY`), not sent yet.
    public var waiting: Bool?
    /// Its place in that line (0: next), when known.
    public var waitPosition: Int?
    /// The W3C `traceparent` of the span that submitted it to fal, when tracing is on: the span
    /// of its webhook (on any instance) links to it.
    public var traceContext: String?
    /// Media custody: the copy of `mediaURL` in the operator's bucket, once made.
    public var storedURL: String?
    /// Media custody: why the copy into the bucket failed for good.
    public var storeError: TaskError?

    /// Media custody is owed for this task: completed with media, neither copied nor given up.
    public var awaitsStore: Bool {
        status == .completed && mediaURL != nil && storedURL == nil && storeError == nil
    }

    public init(
        kind: TaskKind,
        model: String,
        status: TaskStatus = .pending,
        falRequestID: String? = nil,
        statusURL: String? = nil,
        responseURL: String? = nil,
        cancelURL: String? = nil,
        mediaURL: String? = nil,
        error: TaskError? = nil,
        submitStartedAt: Date? = nil,
        submitAttempt: String? = nil,
        lastTriedAt: Date? = nil,
        dueAt: Date? = nil,
        submittedAt: Date? = nil,
        completedAt: Date? = nil,
        previousRequestIDs: [String] = [],
        attempts: Int = 0
    ) {
        self.kind = kind
        self.model = model
        self.status = status
        self.falRequestID = falRequestID
        self.statusURL = statusURL
        self.responseURL = responseURL
        self.cancelURL = cancelURL
        self.mediaURL = mediaURL
        self.error = error
        self.submitStartedAt = submitStartedAt
        self.submitAttempt = submitAttempt
        self.lastTriedAt = lastTriedAt
        self.dueAt = dueAt
        self.submittedAt = submittedAt
        self.completedAt = completedAt
        self.previousRequestIDs = previousRequestIDs
        self.attempts = attempts
    }

    /// Where the submit of the current attempt stands, for crash recovery.
    public enum SubmitState: Sendable, Hashable {
        /// No submit was started: it surely never reached fal, sending it is safe.
        case notStarted
        /// A submit was started but no request id was stored: it may or may not have reached fal
        /// (fal has no idempotency key, so sending again could create a second, billed request).
        case outcomeUnknown
        /// fal accepted it: `falRequestID` is known.
        case accepted
    }

    public var submitState: SubmitState {
        if falRequestID != nil { return .accepted }
        return submitStartedAt == nil ? .notStarted : .outcomeUnknown
    }

    /// Given up without fal's word on the outcome (`timed_out`, or `submit_outcome_unknown`): fal
    /// may still finish the request, and its result then lands (`.completed`, or for an unknown
    /// submit fal's own `.failed`), since fal made and billed it.
    public var acceptsLateResult: Bool {
        status == .timedOut || (status == .failed && error?.code == TaskError.submitOutcomeUnknownCode)
    }

    /// True when `requestID` belongs to an earlier attempt of this task (a late webhook or poll
    /// result for a request that was retried): such events must not be applied.
    public func isFromPreviousAttempt(requestID: String) -> Bool {
        requestID != falRequestID && previousRequestIDs.contains(requestID)
    }

    /// Applies `event` at time `now`. Returns `.changed` when the task changed, otherwise
    /// `.ignored(reason:)` with the task left exactly as it was.
    public mutating func apply(_ event: TaskEvent, at now: Date) -> TransitionOutcome {
        switch event {
        case .submitStarted(let attempt):
            guard status == .pending else { return .ignored(reason: "submit started on a \(status.rawValue) task") }
            guard submitStartedAt == nil else { return .ignored(reason: "submit already started") }
            submitStartedAt = now
            submitAttempt = attempt
            lastTriedAt = now
            attempts += 1
            waiting = nil
            waitPosition = nil
            return .changed

        case .waiting(let position):
            guard status == .pending, submitStartedAt == nil, falRequestID == nil else { return .ignored(reason: "only a task not yet sent waits for a slot") }
            // A wait with no position known keeps the position a task already has.
            guard waiting != true || (position != nil && waitPosition != position) else { return .ignored(reason: "already waiting there") }
            waiting = true
            waitPosition = position
            return .changed

        case .submitAbandoned(let attempt):
            guard status == .pending, submitStartedAt != nil, falRequestID == nil, submitAttempt == attempt else {
                return .ignored(reason: "no submit of this attempt in flight to abandon")
            }
            submitStartedAt = nil
            submitAttempt = nil
            return .changed

        case .accepted(let requestID, let statusURL, let responseURL, let cancelURL, let traceContext):
            let outcome = accept(requestID: requestID, statusURL: statusURL, responseURL: responseURL, cancelURL: cancelURL, at: now)
            // The submit span is kept with the request it sent (not when the answer changes
            // nothing: a repeat, or a webhook that already finished the task).
            if outcome == .changed, let traceContext { self.traceContext = traceContext }
            return outcome

        case .queued:
            return advance(to: .queued, at: now)

        case .running:
            return advance(to: .running, at: now)

        case .progress(let reported):
            guard status == .queued || status == .running else { return .ignored(reason: "progress of a \(status.rawValue) task") }
            var next = reported
            if status == .running { next.queuePosition = nil }
            let stored = next.isEmpty ? nil : next
            guard stored != progress else { return .ignored(reason: "progress unchanged") }
            progress = stored
            return .changed

        case .reused(let mediaURL):
            guard status == .pending, falRequestID == nil else { return .ignored(reason: "only a task not yet at fal can reuse a result") }
            status = .completed
            self.mediaURL = mediaURL
            error = nil
            completedAt = now
            cached = true
            return .changed

        case .completed(let mediaURL):
            guard !status.isTerminal || acceptsLateResult else { return .ignored(reason: "already \(status.rawValue)") }
            status = .completed
            if self.mediaURL != mediaURL { clearStore() }
            self.mediaURL = mediaURL
            error = nil
            completedAt = now
            clearQueuePosition()
            return .changed

        case .failed(let error):
            if status == .failed, acceptsLateResult, error.code != TaskError.submitOutcomeUnknownCode {
                // fal's own word on a submit given up as unknown.
                self.error = error
                completedAt = now
                return .changed
            }
            return finish(.failed, error: error, at: now)

        case .stored(let url):
            guard awaitsStore else { return .ignored(reason: "no copy owed") }
            storedURL = url
            return .changed

        case .storeFailed(let error):
            guard awaitsStore else { return .ignored(reason: "no copy owed") }
            storeError = error
            return .changed

        case .canceled:
            return finish(.canceled, error: nil, at: now)

        case .timedOut:
            return finish(.timedOut, error: .timedOut(kind), at: now)

        case .retry:
            guard status == .failed || status == .timedOut else {
                return .ignored(reason: "retry only from failed or timed_out, not \(status.rawValue)")
            }
            if let falRequestID, !previousRequestIDs.contains(falRequestID) {
                previousRequestIDs.append(falRequestID)
            }
            status = .pending
            falRequestID = nil
            statusURL = nil
            responseURL = nil
            cancelURL = nil
            mediaURL = nil
            clearStore()
            error = nil
            submitStartedAt = nil
            submitAttempt = nil
            submittedAt = nil
            completedAt = nil
            startedAt = nil
            progress = nil
            dueAt = now
            return .changed
        }
    }

    private mutating func accept(
        requestID: String,
        statusURL: String?,
        responseURL: String?,
        cancelURL: String?,
        at now: Date
    ) -> TransitionOutcome {
        if previousRequestIDs.contains(requestID), requestID != falRequestID {
            return .ignored(reason: "request \(requestID) belongs to an earlier attempt")
        }
        if let current = falRequestID, current != requestID {
            return .ignored(reason: "task already has request \(current)")
        }
        if falRequestID == requestID, status.isTerminal, status != .canceled {
            // A submit response after the webhook finished the task: its URLs change nothing a
            // client sees (a canceled task still takes them, to cancel at fal).
            return .ignored(reason: "request \(requestID) already finished")
        }
        var changed = false
        if falRequestID == nil { falRequestID = requestID; changed = true }
        if self.statusURL == nil, let statusURL { self.statusURL = statusURL; changed = true }
        if self.responseURL == nil, let responseURL { self.responseURL = responseURL; changed = true }
        if self.cancelURL == nil, let cancelURL { self.cancelURL = cancelURL; changed = true }
        if submittedAt == nil, changed { submittedAt = now }
        if status == .pending {
            // The submit response moves the task on; an earlier webhook may already have moved it further.
            status = .queued
            if submittedAt == nil { submittedAt = now }
            changed = true
        }
        return changed ? .changed : .ignored(reason: "request \(requestID) already recorded")
    }

    private mutating func advance(to next: TaskStatus, at now: Date) -> TransitionOutcome {
        if status.isTerminal { return .ignored(reason: "already \(status.rawValue)") }
        if status == next { return .ignored(reason: "already \(status.rawValue)") }
        if status.rank > next.rank { return .ignored(reason: "\(status.rawValue) does not go back to \(next.rawValue)") }
        status = next
        if next == .running {
            startedAt = startedAt ?? now
            clearQueuePosition()
        }
        return .changed
    }

    private mutating func finish(_ terminal: TaskStatus, error: TaskError?, at now: Date) -> TransitionOutcome {
        guard !status.isTerminal else { return .ignored(reason: "already \(status.rawValue)") }
        status = terminal
        self.error = error
        completedAt = now
        clearQueuePosition()
        waiting = nil
        waitPosition = nil
        return .changed
    }

    /// A task that runs or ended has no place in fal's queue; its log lines stay.
    private mutating func clearStore() {
        storedURL = nil
        storeError = nil
    }

    private mutating func clearQueuePosition() {
        guard var kept = progress else { return }
        kept.queuePosition = nil
        progress = kept.isEmpty ? nil : kept
    }
}
