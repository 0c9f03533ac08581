import Fal
import Foundation
import Logging
import Metrics
import Redis
import Tracing

/// What reconciling one task did (or, in a dry run, would do). The body of the admin report.
struct ReconcileReport: Sendable, Encodable {
    enum Action: String, Sendable, Encodable {
        /// The task is finished: nothing to do.
        case none
        /// No such job or task (a stale due-set entry is dropped).
        case notFound = "not_found"
        /// Not yet time (first check not reached, submit grace running, audio waiting for the video).
        case wait
        /// Submitted now: Clapper surely never sent it (crash before the submit started).
        case submit
        /// A submit whose outcome is unknown, past its grace period: failed, never sent again.
        case failSubmitOutcomeUnknown = "fail_submit_outcome_unknown"
        /// fal could not be reached (refused, rate limited) before the model's timeout: failed.
        case failSubmitUnreachable = "fail_submit_unreachable"
        /// fal's status moved the task (queued, running).
        case statusUpdated = "status_updated"
        /// fal's status was what Clapper knew already.
        case noChange = "no_change"
        /// fal completed it and the webhook was missed: completed with fal's output.
        case complete
        /// fal completed it with an error: failed with fal's error.
        case fail
        /// fal completed it but its result is gone: failed `result_expired`.
        case failResultExpired = "fail_result_expired"
        /// Past the model's timeout: canceled at fal, marked `timed_out`.
        case timeOut = "time_out"
        /// fal or Redis could not answer now: checked again soon.
        case retryLater = "retry_later"
    }

    var jobId: String
    var task: String
    /// The task's status before.
    var before: String?
    var falRequestId: String?
    /// fal's answer: `IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`, `COMPLETED; result: …`, or the error.
    var fal: String?
    /// The task's status after (in a dry run: what it would be).
    var after: String?
    var action: Action = .none
    var dryRun: Bool
    /// The error code the task was given (or would be).
    var errorCode: String?
    var versionBefore: Int?
    var versionAfter: Int?
    /// When the reconciler looks at the task again (ISO 8601), if it stays unfinished.
    var nextCheckAt: String?
    /// Whether a change was stored.
    var changed = false
}

/// The reconciliation of one task: the rules shared by the background `Reconciler` and the admin
/// API. Every change goes through `JobProcessor.apply`, the same compare-and-set step a webhook
/// uses, so a webhook arriving at the same moment changes nothing twice; a dry run applies the
/// same pure rules to a copy and stores nothing.
struct TaskReconciler: Sendable {
    let processor: JobProcessor
    let queue: DueSet
    let policy: ReconcilePolicy
    /// When set, tasks in flight are asked for their progress (status with logs) this often,
    /// from their acceptance on, not only from the first check (`ProgressPolicy`).
    var progress: ProgressPolicy? = nil

    var catalog: ModelCatalog { processor.catalog }
    var fal: FalClient { processor.fal }

    /// The report and when to look again (nil: leave the due set as it is).
    struct Result: Sendable {
        var report: ReconcileReport
        var next: Date?
        /// The entry is stale (job gone or task finished): drop it from the due set.
        var removeEntry = false
    }

    /// - Parameter force: check fal now even when the first check is not due (admin).
    func reconcile(jobID: String, kind: TaskKind, now: Date, dryRun: Bool, force: Bool) async -> Result {
        var report = ReconcileReport(jobId: jobID, task: kind.rawValue, dryRun: dryRun)
        let loaded: JobStore.Loaded?
        do {
            loaded = try await processor.store.load(jobID)
        } catch {
            report.action = .retryLater
            report.fal = "not asked (Redis: \(error))"
            return Result(report: report, next: now.addingTimeInterval(policy.defaults.baseSeconds))
        }
        guard let job = loaded?.job, let task = job.task(kind) else {
            report.action = .notFound
            return Result(report: report, next: nil, removeEntry: true)
        }
        report.before = task.status.rawValue
        report.after = task.status.rawValue
        report.falRequestId = task.falRequestID
        report.versionBefore = job.version
        report.versionAfter = job.version
        report.errorCode = task.error?.code

        if task.status.isTerminal {
            return Result(report: report, next: nil, removeEntry: true)
        }
        // In the job's trace: under the task's submit span (or the job's create, before any).
        return await processor.tracer.span("reconcile.check", parent: task.traceContext ?? job.traceContext) { span in
            span?.attributes["clapper.job_id"] = jobID
            span?.attributes["clapper.task"] = kind.rawValue
            let result = task.status == .pending
                ? await reconcilePending(job: job, task: task, now: now, report: report)
                : await reconcileAccepted(job: job, task: task, now: now, force: force, report: report)
            span?.attributes["clapper.action"] = result.report.action.rawValue
            return result
        }
    }

    // MARK: Pending: accepted by Clapper, not (known to be) accepted by fal

    private func reconcilePending(job: Job, task: JobTask, now: Date, report: ReconcileReport) async -> Result {
        var report = report
        let schedule = policy.schedule(forModel: task.model)
        switch task.submitState {
        case .notStarted:
            guard job.submissionsDue.contains(task.kind), let due = job.dueSince(task.kind) else {
                // The audio of an after-video job: it goes when the video completes.
                report.action = .wait
                return Result(report: report, next: now.addingTimeInterval(schedule.maxSeconds))
            }
            // fal was never reached in time (refused, rate limited): give up the model's timeout
            // after the task became due, and only once a submit was tried since then. A task
            // waiting in the governor's line for a slot is not given up: it waits for Clapper's
            // own limit, not for fal (its next try, once it has a slot, can still fail it).
            let giveUp = due.addingTimeInterval(Double(catalog.model(id: task.model)?.timeoutSeconds ?? catalog.video.timeoutSeconds))
            let triedSinceDue = task.lastTriedAt.map { $0 >= due } ?? false
            if now >= giveUp, triedSinceDue, task.waiting != true {
                report.fal = "not asked (fal could not be reached before the model's timeout)"
                let error = TaskError(code: "submit_failed", message: "fal could not be reached before the model's timeout")
                return await settle(job: job, kind: task.kind, events: [.failed(error)], output: nil, action: .failSubmitUnreachable, fix: .stuckPending, now: now, report: report)
            }
            report.action = .submit
            report.fal = "not asked (no submit was ever started: fal surely never got it)"
            if report.dryRun {
                return Result(report: report, next: nil)
            }
            await processor.submit(jobID: job.id, kind: task.kind)
            if let after = try? await processor.store.load(job.id)?.job {
                report.after = after.task(task.kind)?.status.rawValue
                report.falRequestId = after.task(task.kind)?.falRequestID
                report.versionAfter = after.version
                report.errorCode = after.task(task.kind)?.error?.code
                report.changed = after.version != job.version
                if report.changed {
                    Self.fixes(.stuckPending).increment()
                    await queue.noteRecent(job.id)
                }
                if let now = after.task(task.kind), !now.status.isTerminal {
                    return Result(report: report, next: nextAfterSubmit(now))
                }
            }
            return Result(report: report, next: nil)

        case .outcomeUnknown, .accepted:
            // fal may have it and may still finish it: its webhook can land until the model's
            // deadline (and later, see `JobTask.acceptsLateResult`).
            let started = task.submitStartedAt ?? job.updatedAt
            let giveUp = max(started.addingTimeInterval(submitGiveUpSeconds), catalog.deadline(for: task) ?? started)
            guard now >= giveUp else {
                report.action = .wait
                report.fal = "not asked (a submit started \(Timestamp.iso8601(started)); its outcome is unknown)"
                return Result(report: report, next: giveUp)
            }
            report.fal = "not asked (never submitted again: fal has no idempotency key)"
            let error = TaskError(
                code: TaskError.submitOutcomeUnknownCode,
                message: "the submit to fal may or may not have arrived and no answer was recorded by the model's deadline; it is not sent again, to avoid a second billed request"
            )
            return await settle(job: job, kind: task.kind, events: [.failed(error)], output: nil, action: .failSubmitOutcomeUnknown, fix: .stuckPending, now: now, report: report)
        }
    }

    /// The least time after a submit started before its unknown outcome is given up: the grace,
    /// and never less than the submit's own deadline (plus a second), so a submit still in flight
    /// is not failed. The model's deadline, when later, wins (see `reconcilePending`).
    var submitGiveUpSeconds: Double {
        max(policy.submitGraceSeconds, Double(processor.fal.configuration.timeouts.submit.components.seconds) + 1)
    }

    private func nextAfterSubmit(_ task: JobTask) -> Date {
        if task.status == .pending, let started = task.submitStartedAt {
            return max(started.addingTimeInterval(submitGiveUpSeconds), catalog.deadline(for: task) ?? started)
        }
        let expected = catalog.model(id: task.model)?.expectedSeconds ?? catalog.video.expectedSeconds
        return policy.firstCheck(acceptedAt: task.submittedAt ?? Date(), model: task.model, expectedSeconds: expected)
    }

    // MARK: Queued or running at fal

    private func reconcileAccepted(job: Job, task: JobTask, now: Date, force: Bool, report: ReconcileReport) async -> Result {
        var report = report
        let deadline = catalog.deadline(for: task)
        let pastDeadline = deadline.map { now >= $0 } ?? false
        guard let request = task.falRequest else {
            // The id came with a webhook before the submit answer: no URLs to ask with.
            report.fal = "not asked (no status URL recorded)"
            if pastDeadline {
                return await timeOut(job: job, task: task, request: nil, now: now, report: report)
            }
            report.action = .wait
            return Result(report: report, next: deadline ?? now.addingTimeInterval(policy.schedule(forModel: task.model).maxSeconds))
        }
        let expected = catalog.model(id: task.model)?.expectedSeconds ?? catalog.video.expectedSeconds
        let firstCheck = policy.firstCheck(acceptedAt: task.submittedAt ?? now, model: task.model, expectedSeconds: expected)
        if !force, !pastDeadline, now < firstCheck, progress == nil {
            report.action = .wait
            report.fal = "not asked yet (first check \(Timestamp.iso8601(firstCheck)))"
            return Result(report: report, next: firstCheck)
        }
        let regular = now < firstCheck
            ? min(firstCheck, deadline ?? firstCheck)
            : policy.nextCheck(after: now, firstCheck: firstCheck, model: task.model, deadline: deadline)
        // Followed for progress: asked again within the progress gap (here the shortest).
        let next = progress.map { min(regular, now.addingTimeInterval($0.interval.seconds)) } ?? regular

        Self.checks.increment()
        let status: FalStatus
        do {
            status = try await fal.status(request, logs: progress != nil)
        } catch {
            report.fal = "status failed: \(error)"
            if pastDeadline {
                return await timeOut(job: job, task: task, request: request, now: now, report: report)
            }
            report.action = .retryLater
            return Result(report: report, next: next)
        }
        switch status.state {
        case .completed(let falError, _):
            return await fetchResult(job: job, task: task, request: request, statusError: falError, now: now, next: next, report: report)
        case .inQueue, .inProgress, .unknown:
            report.fal = Self.describe(status.state)
            if pastDeadline {
                return await timeOut(job: job, task: task, request: request, now: now, report: report)
            }
            var events: [TaskEvent]
            var position = 0
            switch status.state {
            case .inQueue(let queuePosition):
                events = [.queued]
                position = queuePosition ?? 0
            case .inProgress: events = [.running]
            default: events = []
            }
            if progress != nil { events.append(.progress(Self.progress(from: status))) }
            var result = await settle(job: job, kind: task.kind, events: events, output: nil, action: .statusUpdated, fix: nil, now: now, report: report)
            if result.report.after == result.report.before, !result.report.changed { result.report.action = .noChange }
            if let after = result.report.after.flatMap(TaskStatus.init(rawValue:)), !after.isTerminal {
                // Far back in fal's queue: asked less often (`ProgressPolicy.gap(queuePosition:)`).
                result.next = progress.map { min(regular, now.addingTimeInterval($0.gap(queuePosition: position).seconds)) } ?? next
            }
            return result
        }
    }

    private func fetchResult(
        job: Job, task: JobTask, request: FalQueueRequest, statusError: String?, now: Date, next: Date, report: ReconcileReport
    ) async -> Result {
        var report = report
        do {
            let output = try await fal.result(request)
            if let url = catalog.mediaURL(inOutput: output, model: task.model) {
                report.fal = "COMPLETED; result: output with media URL"
                return await settle(job: job, kind: task.kind, events: [.completed(mediaURL: url)], output: output, action: .complete, fix: .missedWebhook, now: now, report: report)
            }
            report.fal = "COMPLETED; result: output without a media URL"
            let error = TaskError(code: "no_media_url", message: "fal's output has no media URL", detail: String(decoding: output, as: UTF8.self))
            return await settle(job: job, kind: task.kind, events: [.failed(error)], output: nil, action: .fail, fix: .missedWebhook, now: now, report: report)
        } catch {
            if error.code == .notFound {
                report.fal = "COMPLETED; result: gone (404)"
                let expired = TaskError(code: "result_expired", message: "fal no longer has this request's result (it keeps results 1 hour, 6 minutes when 10 KB or larger)")
                return await settle(job: job, kind: task.kind, events: [.failed(expired)], output: nil, action: .failResultExpired, fix: .expiredResult, now: now, report: report)
            }
            // fal's word that the request failed: a 4xx from the result (the model's own error), or
            // any answer when the status already carried an error. A 5xx while the status said
            // nothing is fal's trouble, not the request's: asked again soon (issue 12's chaos run
            // found transient 500s failing finished tasks for good).
            let answered = error.httpStatus != nil
            let modelRefused = error.code == .validation || (error.code == .modelError && (error.httpStatus ?? 500) < 500)
            if modelRefused || (answered && statusError != nil) {
                report.fal = "COMPLETED; result: error \(error.httpStatus.map(String.init) ?? "-")"
                let failure = TaskError(
                    // fal's 504 with `X-Fal-Request-Timeout-Type: user`: the job's start deadline.
                    code: error.isUserTimeout ? TaskError.startTimeoutCode : "fal_error",
                    message: statusError ?? error.httpStatus.map { "Invalid status code: \($0)" } ?? error.message,
                    detail: error.body.isEmpty ? nil : String(decoding: error.body, as: UTF8.self)
                )
                return await settle(job: job, kind: task.kind, events: [.failed(failure)], output: nil, action: .fail, fix: .missedWebhook, now: now, report: report)
            }
            // Asked again soon: a large result lives 6 minutes.
            report.fal = "COMPLETED; result fetch failed: \(error)"
            report.action = .retryLater
            return Result(report: report, next: min(next, now.addingTimeInterval(policy.schedule(forModel: task.model).baseSeconds)))
        }
    }

    /// Past the model's timeout: cancel at fal first (cancel is a request, and the task may have
    /// finished meanwhile); a task fal says is already completed gets its result, not `timed_out`.
    private func timeOut(job: Job, task: JobTask, request: FalQueueRequest?, now: Date, report: ReconcileReport) async -> Result {
        if let request, !report.dryRun {
            do {
                if try await fal.cancel(request) == .alreadyCompleted {
                    let retry = now.addingTimeInterval(policy.schedule(forModel: task.model).baseSeconds)
                    return await fetchResult(job: job, task: task, request: request, statusError: nil, now: now, next: retry, report: report)
                }
            } catch {
                processor.logger.warning("cancel at fal after a timeout failed", metadata: ["job": "\(job.id)", "task": "\(task.kind.rawValue)", "error": "\(error)"])
            }
        }
        return await settle(job: job, kind: task.kind, events: [.timedOut], output: nil, action: .timeOut, fix: .timeout, now: now, report: report)
    }

    /// Applies `events` through the processor (the webhook's atomic step), or in a dry run to a
    /// copy of the job, and fills in the state after.
    private func settle(
        job: Job, kind: TaskKind, events: [TaskEvent], output: [UInt8]?, action: ReconcileReport.Action,
        fix: FixKind?, now: Date, report: ReconcileReport
    ) async -> Result {
        var report = report
        report.action = action
        if events.isEmpty { return Result(report: report, next: nil) }
        if report.dryRun {
            var copy = job
            for event in events { _ = copy.apply(kind, event, at: now) }
            report.after = copy.task(kind)?.status.rawValue
            report.errorCode = copy.task(kind)?.error?.code
            return Result(report: report, next: nil)
        }
        do {
            // Settles the attempt this check looked at, not one that started meanwhile.
            let update = try await processor.apply(jobID: job.id, kind: kind, events: events, output: output, onlyIfRequest: .some(job.task(kind)?.falRequestID))
            report.after = update.job.task(kind)?.status.rawValue
            report.errorCode = update.job.task(kind)?.error?.code
            report.versionAfter = update.job.version
            report.changed = update.transition.outcome.isChanged
            if report.changed, let fix {
                Self.fixes(fix).increment()
                await queue.noteRecent(job.id)
            }
        } catch {
            report.action = .retryLater
            report.fal = (report.fal ?? "") + "; store failed: \(error)"
            return Result(report: report, next: now.addingTimeInterval(policy.defaults.baseSeconds))
        }
        return Result(report: report, next: nil)
    }

    /// The progress a status with logs reports: the queue position and the newest lines.
    static func progress(from status: FalStatus) -> TaskProgress {
        var position: Int?
        if case .inQueue(let queuePosition) = status.state { position = queuePosition }
        let lines = status.logs.suffix(TaskProgress.maxLines).map { TaskProgress.LogLine(message: $0.message, level: $0.level, timestamp: $0.timestamp) }
        return TaskProgress(queuePosition: position, logs: lines)
    }

    static func describe(_ state: FalStatus.State) -> String {
        switch state {
        case .inQueue(let position): position.map { "IN_QUEUE (position \($0))" } ?? "IN_QUEUE"
        case .inProgress: "IN_PROGRESS"
        case .completed(let error, _): error.map { "COMPLETED with error: \($0)" } ?? "COMPLETED"
        case .unknown(let text): text
        }
    }

    // MARK: Metrics

    enum FixKind: String, Sendable {
        case missedWebhook = "missed_webhook"
        case timeout
        case stuckPending = "stuck_pending"
        case expiredResult = "expired_result"
    }

    static let checks = Counter(label: "clapper_reconcile_checks_total")

    static func fixes(_ kind: FixKind) -> Counter {
        Counter(label: "clapper_reconcile_fixes_total", dimensions: [("kind", kind.rawValue)])
    }
}

extension TaskReconciler {
    /// Creation times of `jobIDs` (jobs that no longer exist are left out), one pipeline.
    func createdDates(of jobIDs: [String]) async -> [Date] {
        (try? await processor.store.createdDates(of: jobIDs)) ?? []
    }
}
