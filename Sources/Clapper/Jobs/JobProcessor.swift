import Fal
import Foundation
import Logging
import Metrics
import Synchronization
import Tracing

/// The job processor and fal invoker of the product design, as one value: it submits tasks to
/// fal, applies what fal reports through the store's atomic step, and performs the follow-ups
/// the rules ask for (submit the audio after the video, cancel at fal).
struct JobProcessor: Sendable {
    let store: JobStore
    let fal: FalClient
    let catalog: ModelCatalog
    let webhookTokens: WebhookToken
    let publicURL: String
    let logger: Logger
    /// Where job and task timestamps come from.
    let clock: any WallClock
    /// Where follow-ups run after the answer; nil runs them before returning (tools, tests).
    var followUps: FollowUps? = nil
    /// How long new jobs ask fal to keep their media (`ClapperConfiguration.mediaLifetime`).
    var mediaLifetime: Duration? = nil
    /// Where accepted submits' estimated costs are added up per user and day (nil: nowhere).
    var spend: SpendLedger? = nil
    /// Results of earlier tasks by model and input (nil: no cache at all).
    var resultCache: ResultCache? = nil
    /// `CLAPPER_RESULT_CACHE`: every job uses the cache (otherwise only jobs with `cache: true`).
    var cacheByDefault = false
    /// `CLAPPER_RESULT_CACHE_UNSEEDED`: tasks without a fixed seed may reuse results too (a
    /// model without a seed gives a new result every run; reusing one is the operator's call).
    var cacheUnseeded = false
    /// `CLAPPER_FAL_CONCURRENCY`: the slots at fal every submit needs (nil: no limit).
    var governor: FalGovernor? = nil
    /// Spans of submits and changes (off: none).
    var tracer = ClapperTracer.off

    /// Whether the task of `kind` may reuse (and feed) the result cache.
    func usesCache(_ job: Job, _ kind: TaskKind) -> Bool {
        guard resultCache != nil, cacheByDefault || job.cache == true else { return false }
        return cacheUnseeded || (kind == .video && job.videoOptions.seed != nil)
    }

    /// The URL fal calls back: it names the job, the task and the attempt, with an HMAC token over
    /// job and task, so a webhook that arrives before the submit response was stored still lands
    /// on the right task, and one for an earlier attempt of it is told apart.
    func webhookURL(jobID: String, kind: TaskKind, attempt: Int) -> String {
        "\(publicURL)/v1/webhooks/fal/\(jobID)/\(kind.rawValue)?token=\(webhookTokens.make(jobID: jobID, kind: kind))&attempt=\(attempt)"
    }

    /// Submits every task that is due now (the video; the audio too in parallel mode).
    func submitDue(_ job: Job) async {
        await withTaskGroup(of: Void.self) { group in
            for kind in job.submissionsDue {
                group.addTask { await submit(jobID: job.id, kind: kind) }
            }
        }
    }

    /// Submits one task, at most once: `.submitStarted` is stored first (a compare-and-set), so
    /// a second caller, or a second instance, finds it started and sends nothing. The mark names
    /// this try, so when Redis's reply to it is lost and the step is read back, this try still
    /// knows the mark is its own.
    func submit(jobID: String, kind: TaskKind) async {
        await submit(jobID: jobID, kind: kind, attempt: Self.newAttemptID())
    }

    /// One try named `attempt`; calling it again with the same name is how a try whose mark's
    /// reply was lost goes on (the store's retry does this inside `update`).
    func submit(jobID: String, kind: TaskKind, attempt: String) async {
        if let governor, await !holdsSlot(jobID: jobID, kind: kind, governor: governor) { return }
        let started: JobStore.Update
        do {
            started = try await store.update(jobID, now: now()) { job in (job.apply(kind, .submitStarted(attempt: attempt), at: now()), nil) }
        } catch let error as ClapperError where error.code == .notFound {
            return
        } catch {
            // Whether the mark landed is unknown, and nothing was sent: take it back (only if it
            // is this try's), or the task would look like a submit fal may have.
            logger.error("could not start a submit", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error)"])
            await record(jobID: jobID, kind: kind, [.submitAbandoned(attempt: attempt)], what: "taking back a submit mark")
            return
        }
        guard let task = started.job.task(kind), task.submitAttempt == attempt, task.status == .pending, task.falRequestID == nil else {
            // Someone else's submit (it keeps the slot), or a task that ended meanwhile (it frees it).
            if let task = started.job.task(kind), task.status.isTerminal { await releaseSlots([DueSet.Member(jobID: jobID, kind: kind)]) }
            return
        }
        let job = started.job
        await tracer.span("fal.submit", kind: .client, parent: job.traceContext) { span in
            span?.attributes["clapper.job_id"] = jobID
            span?.attributes["clapper.task"] = kind.rawValue
            span?.attributes["fal.model"] = task.model
            await send(job, task, kind: kind, attempt: attempt, span: span)
        }
    }

    /// The submit itself, once its mark is this try's: the result cache, then fal, then what fal
    /// answered stored (with the submit span's trace context, when tracing is on).
    private func send(_ job: Job, _ task: JobTask, kind: TaskKind, attempt: String, span: (any Span)?) async {
        let jobID = job.id
        let input = catalog.input(for: job, kind)
        if usesCache(job, kind), let cache = resultCache {
            var hit: ResultCache.Hit?
            do {
                hit = try await cache.lookup(model: task.model, input: input)
            } catch {
                // The cache is an optimisation: when it cannot be read, fal is asked as usual.
                logger.warning("result cache not readable; submitting to fal", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error)"])
            }
            if let hit {
                Self.cacheHits.increment()
                do {
                    _ = try await apply(jobID: jobID, kind: kind, events: [.reused(mediaURL: hit.mediaURL)], output: hit.output)
                } catch {
                    // Whether the reuse landed is unknown: never pay fal for it now. Taking the mark
                    // back is ignored if it landed; otherwise the reconciler tries again later.
                    logger.warning("could not store a reused result", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error)"])
                    await record(jobID: jobID, kind: kind, [.submitAbandoned(attempt: attempt)], what: "taking back a submit mark after a cache hit")
                }
                return
            }
            Self.cacheMisses.increment()
        }
        do {
            let options = FalSubmitOptions(
                priority: job.priority.flatMap { FalSubmitOptions.Priority(rawValue: $0.rawValue) },
                startTimeout: job.startTimeoutSeconds.map { .seconds($0) },
                mediaLifetime: job.mediaLifetimeSeconds.map { .seconds($0) }
            )
            let request = try await fal.submit(model: task.model, input: input, webhookURL: webhookURL(jobID: jobID, kind: kind, attempt: task.attempts), options: options)
            Self.submits.increment()
            if let cost = task.estimatedCost {
                // fal accepted it: its price is now spent (an estimate: the catalog's price).
                FloatingPointCounter(label: "clapper_fal_estimated_spend_usd_total", dimensions: [("model", task.model)]).increment(by: cost.dollars)
                do {
                    try await spend?.record(userID: job.userID, model: task.model, cost: cost, at: now())
                } catch {
                    logger.warning("could not add a submit's estimated cost to the spend ledger", metadata: ["job": "\(jobID)", "error": "\(error)"])
                }
            }
            span?.attributes["fal.request_id"] = request.requestID
            let trace = span.flatMap { tracer.traceparent(of: $0.context) }
            let accepted = TaskEvent.accepted(requestID: request.requestID, statusURL: request.statusURL, responseURL: request.responseURL, cancelURL: request.cancelURL, traceContext: trace)
            await record(jobID: jobID, kind: kind, [accepted], what: "fal's answer to a submit (request \(request.requestID))")
            if let governor {
                // At fal now: the slot holds until the task ends (released then), at most until
                // its model's deadline and a margin, should every release be lost.
                let deadline = now().addingTimeInterval(Double(catalog.model(id: task.model)?.timeoutSeconds ?? catalog.video.timeoutSeconds) + 120)
                try? await governor.extend(DueSet.Member(jobID: jobID, kind: kind), until: deadline)
            }
        } catch {
            span?.attributes["clapper.submit_error"] = error.code.description
            Self.submitFailures.increment()
            if error.code == .rateLimited || (!error.mayHaveReachedFal && error.httpStatus == nil) {
                // fal surely has no request (rate limited, refused, cancelled before it was sent):
                // back to "not started"; the reconciler sends it again later (until the model's
                // timeout), with no risk of a second billed request. Stored even when this task is
                // being cancelled (shutdown), or the task would later be failed as "outcome unknown".
                logger.warning("submit did not reach fal; it will be sent again", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error.code)"])
                let abandon = Task { await record(jobID: jobID, kind: kind, [.submitAbandoned(attempt: attempt)], what: "an abandoned submit") }
                await abandon.value
                // fal has nothing of it: its slot goes to the next in line (it asks again when resent).
                await releaseSlots([DueSet.Member(jobID: jobID, kind: kind)])
            } else if let status = error.httpStatus, (400..<500).contains(status) {
                // fal answered and refused: no request exists there.
                let code = status == 422 ? "validation" : "submit_rejected"
                let failure = TaskError(code: code, message: error.message, detail: error.body.isEmpty ? nil : String(decoding: error.body, as: UTF8.self))
                await record(jobID: jobID, kind: kind, [.failed(failure)], what: "fal's refusal of a submit")
            } else if error.mayHaveReachedFal {
                // Outcome unknown: fal may have the request. Its webhook can still land (the URL
                // names the task and attempt); otherwise the reconciler fails the task at the
                // model's deadline. Never a second submission.
                logger.warning("submit outcome unknown; left for the webhook or the reconciler", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error.code)"])
            }
        }
    }

    func now() -> Date { clock.now }

    // MARK: The governor (`CLAPPER_FAL_CONCURRENCY`)

    /// Whether the task holds a slot at fal, asking for one: a task that gets none waits in the
    /// line (`.waiting`), and is submitted when a release or the governor's service hands it one.
    private func holdsSlot(jobID: String, kind: TaskKind, governor: FalGovernor) async -> Bool {
        let job: Job
        do {
            guard let loaded = try await store.load(jobID)?.job else { return false }
            job = loaded
        } catch {
            // The mark could not be stored either: the reconciler asks again later.
            logger.warning("could not read a job to ask for a fal slot", metadata: ["job": "\(jobID)", "error": "\(error)"])
            return false
        }
        guard let task = job.task(kind), task.status == .pending, task.submitStartedAt == nil, !job.canceled else { return false }
        let member = DueSet.Member(jobID: jobID, kind: kind)
        let grant: FalGovernor.Grant
        do {
            grant = try await governor.acquire(member, userID: job.userID, priority: job.priority ?? .normal, now: now())
        } catch {
            logger.warning("could not ask for a fal slot; the reconciler asks again", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error)"])
            return false
        }
        submitGranted(grant.others)
        guard grant.granted else {
            Self.governorWaits.increment()
            await record(jobID: jobID, kind: kind, [.waiting(position: nil)], what: "a wait for a fal slot")
            return false
        }
        return true
    }

    /// Frees the slots of `members` (or their places in the line) and submits whatever the line
    /// was given.
    func releaseSlots(_ members: [DueSet.Member]) async {
        guard let governor, !members.isEmpty else { return }
        do {
            submitGranted(try await governor.release(members, now: now()).others)
        } catch {
            // The governor's sweep frees a slot whose task ended; a lease ends by itself.
            logger.warning("could not release fal slots", metadata: ["tasks": "\(members.map(\.encoded))", "error": "\(error)"])
        }
    }

    /// Submits tasks the line just gave slots to, after the answer (follow-ups).
    func submitGranted(_ members: [DueSet.Member]) {
        for member in members {
            let work: FollowUps.Work = { await submit(jobID: member.jobID, kind: member.kind) }
            if followUps?.enqueue(work) != true { Task { await work() } }
        }
    }

    /// fal's answer to a start deadline that passed: an ERROR webhook for status 504 whose
    /// payload says `error_type` `request_timeout`.
    static func isStartTimeout(_ webhook: FalWebhook) -> Bool {
        guard let payload = webhook.payloadBytes, webhook.error?.contains("504") == true else { return false }
        return RawJSON.string(atPath: "error_type", in: payload) == "request_timeout"
    }

    /// A random id naming one submit try.
    static func newAttemptID() -> String {
        String(UInt64.random(in: 1...UInt64.max), radix: 16)
    }

    /// How long what fal answered is kept trying to reach Redis (a restart, a failover) before it
    /// is given up with an error log naming it.
    static let durableStoreLimit: Duration = .seconds(600)

    /// Stores what fal answered (or what must undo a mark), through Redis failures: a first try
    /// with the store's own quick retries; if Redis is still away, the retries go on in the
    /// follow-ups (so the caller, e.g. `POST /v1/jobs`, is answered) with backoff up to
    /// `durableStoreLimit`. Until then fal's webhook can still land the same facts.
    private func record(jobID: String, kind: TaskKind, _ events: [TaskEvent], what: String) async {
        do {
            _ = try await apply(jobID: jobID, kind: kind, events: events)
            return
        } catch let error as ClapperError where error.code == .notFound {
            return
        } catch {
            logger.warning("could not store \(what); retrying", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(error)"])
        }
        let retry: FollowUps.Work = { await recordWithBackoff(jobID: jobID, kind: kind, events, what: what) }
        if followUps?.enqueue(retry) != true { await retry() }
    }

    private func recordWithBackoff(jobID: String, kind: TaskKind, _ events: [TaskEvent], what: String) async {
        let clock = ContinuousClock()
        let deadline = clock.now + Self.durableStoreLimit
        var backoff = Duration.milliseconds(100)
        var lastError: any Error = CancellationError()
        while !Task.isCancelled, clock.now + backoff < deadline {
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
            do {
                _ = try await apply(jobID: jobID, kind: kind, events: events)
                logger.notice("stored \(what) after Redis came back", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)"])
                return
            } catch let error as ClapperError where error.code == .notFound {
                return
            } catch {
                lastError = error
            }
        }
        logger.error("gave up storing \(what)", metadata: ["job": "\(jobID)", "task": "\(kind.rawValue)", "error": "\(lastError)"])
    }

    /// Applies one event (with fal's raw output when it completes a task) and performs the
    /// follow-ups of the change. A repeat comes back with `.ignored` and does nothing.
    func apply(jobID: String, kind: TaskKind, event: TaskEvent, output: [UInt8]? = nil) async throws -> JobStore.Update {
        try await apply(jobID: jobID, kind: kind, events: [event], output: output)
    }

    /// Several events of one task as one change (e.g. a webhook that arrives before the submit
    /// response: the request id is recorded and the result applied together, one version).
    /// With `onlyIfRequest`, only while the task's fal request id is still that one (nil: still
    /// none), so a check that started on one attempt never settles a newer one.
    func apply(jobID: String, kind: TaskKind, events: [TaskEvent], output: [UInt8]? = nil, onlyIfRequest: String?? = .none) async throws -> JobStore.Update {
        try await apply(jobID: jobID, kind: kind) { task, _ in
            if case .some(let expected) = onlyIfRequest, task.falRequestID != expected { return ([], nil) }
            return (events, output)
        }
    }

    /// fal's webhook for one task, decided against the job as it is in the same atomic step (one
    /// read): a webhook of an earlier attempt or of another request is ignored; one that comes
    /// before the submit response records the request id with the result; one for a task given
    /// up without fal's word (`timed_out`, `submit_outcome_unknown`) still lands its result.
    /// `attempt` is the attempt number in the webhook URL (nil in URLs made before it was added).
    func applyWebhook(jobID: String, kind: TaskKind, attempt: Int?, webhook: FalWebhook) async throws -> JobStore.Update {
        let catalog = self.catalog
        return try await apply(jobID: jobID, kind: kind) { task, job in
            if let attempt, attempt != task.attempts { return ([], nil) }
            if task.isFromPreviousAttempt(requestID: webhook.requestID) || (task.falRequestID != nil && task.falRequestID != webhook.requestID) {
                return ([], nil)
            }
            var events: [TaskEvent] = []
            if task.falRequestID == nil {
                events.append(.accepted(requestID: webhook.requestID, statusURL: nil, responseURL: nil, cancelURL: nil))
            }
            switch webhook.status {
            case .ok:
                let payload = webhook.payloadBytes ?? []
                if let url = catalog.mediaURL(inOutput: payload, model: task.model) {
                    events.append(.completed(mediaURL: url))
                    return (events, payload)
                }
                events.append(.failed(TaskError(code: "no_media_url", message: "fal's output has no media URL", detail: String(decoding: payload, as: UTF8.self))))
            case .error, .other:
                let detail = webhook.payloadBytes.map { String(decoding: $0, as: UTF8.self) } ?? webhook.payloadError
                var code = webhook.payloadBytes == nil && webhook.payloadError != nil ? "payload_error" : "fal_error"
                // A start deadline the job asked for that passed at fal: fal's 504 `request_timeout`
                // (the result would say `X-Fal-Request-Timeout-Type: user`; the webhook has no headers).
                if job.startTimeoutSeconds != nil, Self.isStartTimeout(webhook) { code = TaskError.startTimeoutCode }
                events.append(.failed(TaskError(code: code, message: webhook.error ?? webhook.payloadError ?? "fal reported an error", detail: detail)))
            }
            return (events, nil)
        }
    }

    /// The one path every change of a task takes: `decide` sees the task as stored and names the
    /// events (and fal's raw output, kept when the task completes); they are applied in order as
    /// one change, and the follow-ups of that change are performed.
    private func apply(
        jobID: String,
        kind: TaskKind,
        decide: @escaping @Sendable (JobTask, Job) -> (events: [TaskEvent], output: [UInt8]?)
    ) async throws -> JobStore.Update {
        try await tracer.span("job.apply") { span in
            let update = try await applyUntraced(jobID: jobID, kind: kind, decide: decide)
            span?.attributes["clapper.job_id"] = jobID
            span?.attributes["clapper.task"] = kind.rawValue
            span?.attributes["clapper.changed"] = update.transition.outcome.isChanged
            span?.attributes["clapper.version"] = update.job.version
            return update
        }
    }

    private func applyUntraced(
        jobID: String,
        kind: TaskKind,
        decide: @escaping @Sendable (JobTask, Job) -> (events: [TaskEvent], output: [UInt8]?)
    ) async throws -> JobStore.Update {
        let at = now()
        // The tasks this change ended (the last try's, when the compare-and-set was retried).
        let ended = Mutex<[TaskKind]>([])
        let update = try await store.update(jobID, now: at) { job in
            guard let task = job.task(kind) else { return (.ignored("no \(kind.rawValue) task in this job"), nil) }
            let runningBefore = job.tasks.filter { !$0.status.isTerminal }.map(\.kind)
            defer { ended.withLock { $0 = runningBefore.filter { job.task($0)?.status.isTerminal == true } } }
            let (events, output) = decide(task, job)
            guard !events.isEmpty else { return (.ignored("event for another request"), nil) }
            var changed = false
            var actions: [JobAction] = []
            var reasons: [String] = []
            for event in events {
                let transition = job.apply(kind, event, at: at)
                switch transition.outcome {
                case .changed: changed = true
                case .ignored(let reason): reasons.append(reason)
                }
                actions += transition.actions
            }
            let outcome: TransitionOutcome = changed ? .changed : .ignored(reason: reasons.joined(separator: "; "))
            let keepOutput = changed && job.task(kind)?.status == .completed
            return (JobTransition(outcome: outcome, actions: actions), keepOutput ? output.map { (kind, $0) } : nil)
        }
        if update.transition.outcome.isChanged {
            Self.transitions.increment()
            await feedCache(update, kind: kind)
            // A task that ended leaves fal (or the line): its slot goes to the next in line.
            await releaseSlots(ended.withLock { $0 }.map { DueSet.Member(jobID: jobID, kind: $0) })
        } else {
            Self.ignored.increment()
        }
        if !update.transition.actions.isEmpty {
            let actions = update.transition.actions, job = update.job
            if followUps?.enqueue({ await perform(actions, job: job) }) != true {
                await perform(actions, job: job)
            }
        }
        return update
    }

    /// A task fal just completed, with its output, is kept in the result cache for as long as fal
    /// keeps its media (the job's media lifetime; a day when fal's default applies).
    private func feedCache(_ update: JobStore.Update, kind: TaskKind) async {
        let job = update.job
        guard let cache = resultCache, let output = update.storedOutput, let task = job.task(kind),
              task.status == .completed, task.cached != true, let media = task.mediaURL, usesCache(job, kind)
        else { return }
        let input = catalog.input(for: job, kind)
        do {
            try await cache.store(model: task.model, input: input, hit: .init(mediaURL: media, output: output), seconds: job.mediaLifetimeSeconds ?? 24 * 3600)
        } catch {
            logger.warning("could not keep a result in the cache", metadata: ["job": "\(job.id)", "error": "\(error)"])
        }
    }

    /// Job-level cancel: marks unfinished tasks canceled, then asks fal to cancel what runs.
    func cancel(jobID: String) async throws -> JobStore.Update {
        let update = try await store.update(jobID, now: now()) { job in (job.cancel(at: now()), nil) }
        await perform(update.transition.actions, job: update.job)
        await releaseSlots(update.job.tasks.map { DueSet.Member(jobID: jobID, kind: $0.kind) })
        return update
    }

    func perform(_ actions: [JobAction], job: Job) async {
        for action in actions {
            switch action {
            case .submit(let kind):
                await submit(jobID: job.id, kind: kind)
            case .cancelAtFal(let kind):
                guard let task = job.task(kind), let request = task.falRequest else { continue }
                do {
                    _ = try await fal.cancel(request)
                } catch {
                    logger.warning("cancel at fal failed", metadata: ["job": "\(job.id)", "task": "\(kind.rawValue)", "error": "\(error)"])
                }
            }
        }
    }

    static let submits = Counter(label: "clapper_fal_submits_total")
    static let governorWaits = Counter(label: "clapper_governor_waits_total")
    static let submitFailures = Counter(label: "clapper_fal_submit_failures_total")
    static let transitions = Counter(label: "clapper_job_changes_total")
    static let ignored = Counter(label: "clapper_job_events_ignored_total")
    static let cacheHits = Counter(label: "clapper_result_cache_total", dimensions: [("outcome", "hit")])
    static let cacheMisses = Counter(label: "clapper_result_cache_total", dimensions: [("outcome", "miss")])
}

extension JobTask {
    /// The URLs fal returned at submit, for status, result and cancel.
    var falRequest: FalQueueRequest? {
        guard let falRequestID, let statusURL, let responseURL, let cancelURL else { return nil }
        return FalQueueRequest(requestID: falRequestID, statusURL: statusURL, responseURL: responseURL, cancelURL: cancelURL)
    }
}
