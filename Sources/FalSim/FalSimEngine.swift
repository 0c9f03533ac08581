import Foundation
import Logging

/// The simulated queue: jobs, their lifecycle, results, webhooks and ground truth.
/// All state lives in this actor; timers run in `FalSimScheduler`, rules in
/// `FalSimQueueStateMachine`.
actor FalSimEngine {
    /// What the HTTP layer answers.
    struct Answer: Sendable {
        var status: Int
        var body: [UInt8]
        /// Hold the answer back for `stallDuration` first.
        var stall = false
        /// A `Retry-After` header to send (the `retry-after=` fault).
        var retryAfter: String?
        /// An `X-Fal-Error-Type` header to send (an infrastructure error's result).
        var errorType: String?
        /// An `X-Fal-Request-Timeout-Type` header (`user`: the submit's start deadline passed).
        var timeoutType: String?

        init(_ status: Int, _ json: FalSimJSON, stall: Bool = false) {
            self.status = status
            self.body = json.pythonSerialized()
            self.stall = stall
        }

        static func detail(_ status: Int, _ message: String) -> Answer {
            Answer(status, .object(["detail": .string(message)]))
        }
    }

    private struct Job {
        var record: FalSimRequestRecord
        var faults: FalSimFaults
        var appPath: String
        var input: FalSimJSON
        var result: FalSimModelResult?
        var resultBytes = 0
        var completedInstant: ContinuousClock.Instant?
        var webhookBody: [UInt8]?
        var lastPublished: [UInt8]?
        /// `status-500=<n>` / `result-500=<n>` calls still to fail.
        var statusErrorsLeft = 0
        var resultErrorsLeft = 0
        /// It never started: its `X-Fal-Request-Timeout` passed in the queue.
        var startTimedOut = false
        /// When it started running, for its progress log lines.
        var startedInstant: ContinuousClock.Instant?
        /// Log lines printed so far under `log-storm`.
        var stormLines = 0
    }

    private struct Waiter {
        let requestID: String
        let predicate: @Sendable (FalSimRequestRecord) -> Bool
        let continuation: CheckedContinuation<FalSimRequestRecord?, Never>
    }

    let configuration: FalSimConfiguration
    let signer: FalSimWebhookSigner
    private let scheduler: FalSimScheduler
    private let transport: any FalSimWebhookTransport
    private let retrySchedule: FalSimWebhookRetrySchedule
    private let catalog = FalSimModelCatalog()
    private let logger: Logger

    private var jobs: [String: Job] = [:]
    private var order: [String] = []
    private var queue: FalSimQueueStateMachine
    private var rules: [FalSimFaultRule] = []
    private var subscribers: [String: [Int: AsyncStream<FalSimStatusEvent>.Continuation]] = [:]
    private var nextSubscriberID = 0
    private var waiters: [Waiter] = []
    private var held: [String] = []
    /// Requests running under `hold-run`, until `releaseHeldRuns`.
    private var heldRuns: [String] = []
    private var base: String?
    private var baseWaiters: [CheckedContinuation<String, Never>] = []
    /// Submits seen per model + prompt, for the chaos plan.
    private var chaosSubmits: [String: Int] = [:]

    init(
        configuration: FalSimConfiguration,
        signer: FalSimWebhookSigner,
        scheduler: FalSimScheduler,
        transport: any FalSimWebhookTransport,
        logger: Logger
    ) {
        self.configuration = configuration
        self.signer = signer
        self.scheduler = scheduler
        self.transport = transport
        self.retrySchedule = FalSimWebhookRetrySchedule(scale: configuration.webhookRetryScale)
        self.queue = FalSimQueueStateMachine(concurrency: configuration.concurrency)
        self.logger = logger
    }

    // MARK: Address

    func bound(port: Int) {
        let host = ["0.0.0.0", "::"].contains(configuration.host) ? "127.0.0.1" : configuration.host
        let own = host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        var chosen = configuration.publicURL ?? own
        while chosen.hasSuffix("/") { chosen.removeLast() }
        base = chosen
        for waiter in baseWaiters { waiter.resume(returning: chosen) }
        baseWaiters = []
    }

    /// The public base URL, once the server is bound.
    func baseURL() async -> String {
        if let base { return base }
        return await withCheckedContinuation { baseWaiters.append($0) }
    }

    // MARK: Faults

    func addFaultRule(_ rule: FalSimFaultRule) throws(FalSimError) {
        _ = try FalSimFaults(names: rule.faults)
        rules.append(rule)
    }

    /// Fault names for a submit: run faults, header faults, then matching rules (used up).
    private func faultNames(model: String, input: FalSimJSON, header: [String]) -> [String] {
        var names = configuration.faults + header
        let prompt = input["prompt"]?.stringValue
        if let chaos = configuration.chaos {
            let key = model + "\n" + (prompt ?? "")
            let index = chaosSubmits[key, default: 0]
            chaosSubmits[key] = index + 1
            names += chaos.faults(model: model, prompt: prompt, submitIndex: index)
        }
        var index = 0
        while index < rules.count {
            if rules[index].matches(model: model, prompt: prompt) {
                names += rules[index].faults
                if let times = rules[index].times {
                    if times <= 1 {
                        rules.remove(at: index)
                        continue
                    }
                    rules[index].times = times - 1
                }
            }
            index += 1
        }
        return names.filter { !$0.isEmpty }
    }

    // MARK: Submit

    func submit(model: String, body: [UInt8], webhookURL: String?, headerFaults: [String], options: [String: String] = [:]) -> Answer {
        let id = UUID().uuidString.lowercased()
        let base = self.base ?? ""
        let input: FalSimJSON
        var state = FalSimRequestRecord.State.inQueue
        var answer: Answer?
        do {
            input = try FalSimJSON.parse(body)
        } catch {
            input = .null
            state = .rejected
            answer = Answer(422, .object(["detail": .array([.object([
                "loc": .array([.string("body")]), "msg": .string(error.message), "type": .string("value_error.jsondecode"),
            ])])]))
        }
        let names = state == .rejected ? headerFaults : faultNames(model: model, input: input, header: headerFaults)
        let faults: FalSimFaults
        do {
            faults = try FalSimFaults(names: names)
        } catch {
            return Answer.detail(400, error.message)
        }
        if answer == nil, let status = faults.submitStatus {
            state = .rejected
            answer = Answer.detail(status, status == 429 ? "Rate limit exceeded (fal-sim fault)" : "Service unavailable (fal-sim fault)")
            answer?.retryAfter = faults.retryAfter
        }
        let appPath = FalSimRoutes.appPath(ofModel: model)
        let record = FalSimRequestRecord(
            id: id, model: model, input: String(decoding: body, as: UTF8.self), webhookURL: webhookURL,
            state: state, outcome: state == .rejected ? .rejected : nil,
            submitStatus: answer?.status ?? faults.submitAfterCreateStatus ?? 200,
            faults: names, receivedAt: Date(), completedAt: nil, webhookBody: nil, deliveries: [], options: options
        )
        var job = Job(record: record, faults: faults, appPath: appPath, input: input)
        job.statusErrorsLeft = faults.statusErrors
        job.resultErrorsLeft = faults.resultErrors
        jobs[id] = job
        order.append(id)
        if let answer { return answer }

        queue.submit(id, lowPriority: options["x-fal-queue-priority"]?.lowercased() == "low")
        scheduler.schedule(after: configuration.queueDelay) { [self] in await self.queueDelayElapsed(id) }
        // fal's start deadline: seconds, fractions allowed (fal-client sends "60.0").
        if let text = options["x-fal-request-timeout"], let seconds = Double(text), seconds.isFinite, seconds > 0, seconds < 86_400 {
            scheduler.schedule(after: .milliseconds(Int64(seconds * 1000))) { [self] in await self.startDeadlinePassed(id) }
        }
        var response: [String: FalSimJSON] = [
            "status": .string("IN_QUEUE"),
            "request_id": .string(id),
            "gateway_request_id": .string(id),
            "response_url": .string(FalSimRoutes.responseURL(base: base, appPath: appPath, id: id)),
            "status_url": .string(FalSimRoutes.statusURL(base: base, appPath: appPath, id: id)),
            "cancel_url": .string(FalSimRoutes.cancelURL(base: base, appPath: appPath, id: id)),
        ]
        response["queue_position"] = .int(queue.queuePosition(of: id) ?? 0)
        publishQueue()
        if let status = faults.submitAfterCreateStatus {
            // The job exists and runs; only the answer is lost.
            return Answer.detail(status, "Internal server error (fal-sim fault 'submit-500-after-create')")
        }
        return Answer(200, .object(response), stall: faults.submitStall)
    }

    // MARK: Lifecycle

    private func queueDelayElapsed(_ id: String) {
        for started in queue.queueDelayElapsed(id) { start(started) }
        publishQueue()
    }

    /// A request still waiting at its `X-Fal-Request-Timeout` never runs: it completes with fal's
    /// 504 (`error_type` `request_timeout`, result header `X-Fal-Request-Timeout-Type: user`).
    private func startDeadlinePassed(_ id: String) {
        guard case .waiting = queue.phase(of: id), queue.cancel(id) == .canceledWhileQueued, var job = jobs[id] else { return }
        complete(&job, result: .failure(status: 504, body: .object([
            "detail": .string("Request timed out before it started (X-Fal-Request-Timeout)"),
            "error_type": .string("request_timeout"),
        ])), outcome: .error)
        job.startTimedOut = true
        jobs[id] = job
        changed(id)
        publishQueue()
        sendWebhook(id)
    }

    private func start(_ id: String) {
        jobs[id]?.record.state = .inProgress
        jobs[id]?.record.startedAt = Date()
        jobs[id]?.startedInstant = ContinuousClock.now
        changed(id)
        if jobs[id]?.faults.holdRun == true {
            heldRuns.append(id)
            return
        }
        scheduler.schedule(after: configuration.runDelay) { [self] in await self.finish(id) }
    }

    private func finish(_ id: String) {
        guard var job = jobs[id] else { return }
        let result: FalSimModelResult
        if job.faults.fail {
            result = FalSimModelCatalog.simulatedFailure
        } else if let type = job.faults.infraErrorType {
            result = FalSimModelCatalog.infrastructureFailure(type: type)
        } else {
            let media = FalSimModelCatalog.MediaContext(baseURL: base ?? "", requestID: id)
            result = catalog.run(model: job.record.model, input: job.input, media: media)
        }
        complete(&job, result: result, outcome: result.isOutput ? .ok : .error)
        jobs[id] = job
        for started in queue.finish(id) { start(started) }
        changed(id)
        publishQueue()
        sendWebhook(id)
    }

    private func complete(_ job: inout Job, result: FalSimModelResult, outcome: FalSimRequestRecord.Outcome) {
        job.result = result
        job.resultBytes = result.bodyJSON.pythonSerialized().count
        job.completedInstant = .now
        job.record.state = .completed
        job.record.outcome = outcome
        job.record.completedAt = Date()
    }

    // MARK: Status, result, cancel

    private func job(_ id: String, appPath: String) -> Job? {
        guard let job = jobs[id], job.record.state != .rejected, job.appPath == appPath else { return nil }
        return job
    }

    private static let notFound = Answer.detail(404, "Request not found")

    private func statusJSON(_ id: String, logs: Bool) -> FalSimJSON {
        guard let job = jobs[id] else { return .null }
        let base = self.base ?? ""
        var body: [String: FalSimJSON] = [
            "status": .string(job.record.state == .completed ? "COMPLETED" : job.record.state.rawValue),
            "request_id": .string(id),
            "response_url": .string(FalSimRoutes.responseURL(base: base, appPath: job.appPath, id: id)),
            "status_url": .string(FalSimRoutes.statusURL(base: base, appPath: job.appPath, id: id)),
            "cancel_url": .string(FalSimRoutes.cancelURL(base: base, appPath: job.appPath, id: id)),
        ]
        if let position = queue.queuePosition(of: id) { body["queue_position"] = .int(position) }
        // fal always sends `logs`: the entries when asked for, null otherwise (fal's Python client
        // reads `data["logs"]` unconditionally).
        body["logs"] = .null
        if logs {
            let timestamp = FalSimJSON.string(ISO8601DateFormatter().string(from: job.record.startedAt ?? job.record.receivedAt))
            body["logs"] = .array(logLines(of: job).map { message in
                .object(["message": .string(message), "level": .string("INFO"), "source": .string("user"), "timestamp": timestamp])
            })
        }
        if job.record.state == .completed {
            let seconds = Double(configuration.runDelay.components.seconds) + Double(configuration.runDelay.components.attoseconds) / 1e18
            body["metrics"] = .object(["inference_time": job.record.outcome == .canceled ? .null : .double(seconds)])
            if case .failure(let status, let errorBody) = job.result {
                body["error"] = .string("Invalid status code: \(status)")
                body["error_type"] = .string(errorBody["error_type"]?.stringValue ?? (status == 422 ? "validation_error" : "request_error"))
            }
        }
        return .object(body)
    }

    /// What the model printed so far, as fal lists it (every line since the start): a line when it
    /// started, one per quarter of the run (`runDelay`) that has passed, and under `log-storm`
    /// `logStormLines` new lines per status asked for while it runs.
    private func logLines(of job: Job) -> [String] {
        guard let started = job.startedInstant else { return [] }
        var lines = ["fal-sim: running \(job.record.model)"]
        let run = configuration.runDelay
        let elapsed = job.record.state == .completed ? run : started.duration(to: .now)
        if run > .zero {
            for quarter in 1...4 where elapsed >= run * quarter / 4 { lines.append("fal-sim: \(quarter * 25)% done") }
        }
        if job.faults.logStorm {
            lines += (0..<job.stormLines).suffix(Self.logStormLines).map { "fal-sim: step \($0 + 1)" }
        }
        return lines
    }

    /// New log lines per status under `log-storm`.
    static let logStormLines = 1000

    func status(id: String, appPath: String, logs: Bool) -> Answer {
        guard var job = job(id, appPath: appPath) else { return Self.notFound }
        job.record.statusPolls += 1
        if logs, job.faults.logStorm, job.record.state == .inProgress { job.stormLines += Self.logStormLines }
        jobs[id] = job
        wakeWaiters(id)
        if job.statusErrorsLeft > 0 {
            jobs[id]?.statusErrorsLeft -= 1
            return Answer.detail(500, "Internal server error (fal-sim fault 'status-500')")
        }
        let code = job.record.state == .completed ? 200 : 202
        return Answer(code, statusJSON(id, logs: logs), stall: job.faults.statusStall)
    }

    func result(id: String, appPath: String) -> Answer {
        guard let job = job(id, appPath: appPath) else { return Self.notFound }
        if job.resultErrorsLeft > 0 {
            jobs[id]?.resultErrorsLeft -= 1
            return Answer.detail(500, "Internal server error (fal-sim fault 'result-500')")
        }
        guard let result = job.result, let completed = job.completedInstant else {
            return Answer.detail(400, "Request is still in progress")
        }
        let retention: Duration = job.faults.expireResult
            ? .zero
            : (job.resultBytes >= configuration.largeResultThreshold ? configuration.largeResultRetention : configuration.resultRetention)
        if job.faults.expireResult || ContinuousClock.now - completed >= retention {
            return Answer.detail(404, "Request result not found: it has expired")
        }
        switch result {
        case .output(let output): return Answer(200, output)
        case .failure(let status, let body):
            var answer = Answer(status, body)
            answer.errorType = body["error_type"]?.stringValue
            if job.startTimedOut { answer.timeoutType = "user" }
            return answer
        }
    }

    func cancel(id: String, appPath: String) -> Answer {
        guard job(id, appPath: appPath) != nil else { return Answer(404, .object(["status": .string("NOT_FOUND")])) }
        switch queue.cancel(id) {
        case .notFound:
            return Answer(404, .object(["status": .string("NOT_FOUND")]))
        case .alreadyCompleted:
            return Answer(400, .object(["status": .string("ALREADY_COMPLETED")]))
        case .requestedWhileRunning:
            return Answer(202, .object(["status": .string("CANCELLATION_REQUESTED")]))
        case .canceledWhileQueued:
            if var job = jobs[id] {
                complete(&job, result: .failure(status: 400, body: .object(["detail": .string("Request was cancelled")])), outcome: .canceled)
                jobs[id] = job
            }
            changed(id)
            publishQueue()
            sendWebhook(id)
            return Answer(202, .object(["status": .string("CANCELLATION_REQUESTED")]))
        }
    }

    // MARK: Status streams

    /// Registers a stream; it gets the current status at once and one per change, and is
    /// finished after COMPLETED. Nil when the request is unknown.
    func subscribe(id: String, appPath: String, continuation: AsyncStream<FalSimStatusEvent>.Continuation) -> Int? {
        guard let job = job(id, appPath: appPath) else { return nil }
        continuation.yield(.status(statusJSON(id, logs: false).pythonSerialized()))
        if job.record.state == .completed {
            continuation.finish()
            return nil
        }
        nextSubscriberID += 1
        subscribers[id, default: [:]][nextSubscriberID] = continuation
        return nextSubscriberID
    }

    func unsubscribe(id: String, subscriber: Int) {
        subscribers[id]?[subscriber] = nil
        if subscribers[id]?.isEmpty == true { subscribers[id] = nil }
    }

    /// A request's record changed: publish its status and wake waiters.
    private func changed(_ id: String) {
        publish(id)
        wakeWaiters(id)
    }

    /// Resumes the waiters on `id` whose predicate now holds.
    private func wakeWaiters(_ id: String) {
        guard let record = jobs[id]?.record else { return }
        var index = 0
        while index < waiters.count {
            let waiter = waiters[index]
            if waiter.requestID == id, waiter.predicate(record) {
                waiters.remove(at: index)
                waiter.continuation.resume(returning: record)
            } else {
                index += 1
            }
        }
    }

    private func publish(_ id: String) {
        guard let streams = subscribers[id], let job = jobs[id] else { return }
        let bytes = statusJSON(id, logs: false).pythonSerialized()
        if bytes != job.lastPublished {
            jobs[id]?.lastPublished = bytes
            for stream in streams.values { stream.yield(.status(bytes)) }
        }
        if job.record.state == .completed {
            for stream in streams.values { stream.finish() }
            subscribers[id] = nil
        }
    }

    /// Queue positions moved: publish to streams of waiting requests.
    private func publishQueue() {
        for id in subscribers.keys where jobs[id]?.record.state == .inQueue { publish(id) }
    }

    // MARK: Webhooks

    private func webhookBody(for job: Job) -> FalSimJSON {
        let id = job.record.id
        var body: [String: FalSimJSON] = [
            "request_id": .string(id),
            "gateway_request_id": .string(id),
        ]
        switch job.result {
        case .output(let output)?:
            if job.faults.payloadError {
                body["status"] = .string("ERROR")
                body["error"] = .string("Failed to serialize the response payload")
                body["payload"] = .null
                body["payload_error"] = .string("Response payload is not JSON serializable (fal-sim fault 'payload-error')")
            } else {
                body["status"] = .string("OK")
                body["error"] = .null
                body["payload"] = output
            }
        case .failure(let status, let errorBody)?:
            body["status"] = .string("ERROR")
            body["error"] = .string("Invalid status code: \(status)")
            if job.faults.payloadError {
                body["payload"] = .null
                body["payload_error"] = .string("Response payload is not JSON serializable (fal-sim fault 'payload-error')")
            } else {
                body["payload"] = errorBody
            }
        case nil:
            break
        }
        return .object(body)
    }

    private func sendWebhook(_ id: String) {
        guard var job = jobs[id], job.record.webhookURL != nil else { return }
        let bytes = webhookBody(for: job).pythonSerialized()
        job.webhookBody = bytes
        job.record.webhookBody = String(decoding: bytes, as: UTF8.self)
        jobs[id] = job
        changed(id)
        if job.faults.dropWebhook { return }
        if job.faults.holdWebhook {
            held.append(id)
            return
        }
        let delay = job.faults.webhookDelay ?? .zero
        for copy in copies(of: job) {
            scheduleAttempt(id: id, copy: copy, attempt: 1, after: copy == 2 ? delay + (job.faults.repeatWebhook ?? .zero) : delay)
        }
    }

    private func copies(of job: Job) -> [Int] { job.faults.duplicateWebhook || job.faults.repeatWebhook != nil ? [1, 2] : [1] }

    private func scheduleAttempt(id: String, copy: Int, attempt: Int, after delay: Duration) {
        scheduler.schedule(after: delay) { [self] in await self.attempt(id: id, copy: copy, attempt: attempt) }
    }

    private func attempt(id: String, copy: Int, attempt: Int) async {
        guard let job = jobs[id], let body = job.webhookBody, let target = job.record.webhookURL else { return }
        let result: FalSimDeliveryResult
        if let url = URL(string: target), url.scheme == "http" || url.scheme == "https" {
            do {
                let headers = try signer.headers(requestID: id, body: body, at: Date(), wrongKey: job.faults.wrongSignature)
                result = await transport.post(url: url, headers: headers, body: body)
            } catch {
                result = FalSimDeliveryResult(statusCode: nil, error: "signing failed: \(error)")
            }
        } else {
            result = FalSimDeliveryResult(statusCode: nil, error: "invalid webhook URL")
        }
        jobs[id]?.record.deliveries.append(.init(
            attempt: attempt, copy: copy, statusCode: result.statusCode, error: result.error, at: Date()
        ))
        logger.debug("fal-sim webhook delivery", metadata: [
            "request_id": "\(id)", "attempt": "\(attempt)", "status": "\(result.statusCode.map(String.init) ?? result.error ?? "-")",
        ])
        changed(id)
        if !result.succeeded, let delay = retrySchedule.delay(beforeAttempt: attempt + 1) {
            scheduleAttempt(id: id, copy: copy, attempt: attempt + 1, after: delay)
        }
    }

    /// Sends the held webhooks' first tries one after another, in hold order or reversed;
    /// returns their request ids in delivery order.
    /// Lets the requests held by `hold-run` finish (after the run delay); their ids.
    func releaseHeldRuns() -> [String] {
        let ids = heldRuns
        heldRuns = []
        for id in ids { scheduler.schedule(after: configuration.runDelay) { [self] in await self.finish(id) } }
        return ids
    }

    func releaseHeldWebhooks(reverse: Bool) async -> [String] {
        let ids = reverse ? Array(held.reversed()) : held
        held = []
        for id in ids {
            guard let job = jobs[id] else { continue }
            for copy in copies(of: job) { await attempt(id: id, copy: copy, attempt: 1) }
        }
        return ids
    }

    // MARK: Ground truth

    func records() -> [FalSimRequestRecord] { order.compactMap { jobs[$0]?.record } }

    func record(id: String) -> FalSimRequestRecord? { jobs[id]?.record }

    /// Waits until `predicate` holds for the record of `requestID`.
    func wait(requestID: String, until predicate: @escaping @Sendable (FalSimRequestRecord) -> Bool) async -> FalSimRequestRecord? {
        if let record = jobs[requestID]?.record, predicate(record) { return record }
        return await withCheckedContinuation { continuation in
            waiters.append(Waiter(requestID: requestID, predicate: predicate, continuation: continuation))
        }
    }
}

extension FalSimModelResult {
    var isOutput: Bool {
        if case .output = self { return true }
        return false
    }

    var bodyJSON: FalSimJSON {
        switch self {
        case .output(let output): return output
        case .failure(_, let body): return body
        }
    }
}
