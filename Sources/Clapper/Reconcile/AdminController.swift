import Foundation
import HTTPTypes
import Hummingbird

/// `/v1/admin`: operators' view of stuck jobs and their levers. The group's middleware asks for
/// the admin token (`CLAPPER_ADMIN_TOKEN`); a user token gets 401 here, and the admin token opens
/// no user route (it carries no user).
struct AdminController: Sendable {
    let worker: TaskReconciler
    let clock: any WallClock

    var processor: JobProcessor { worker.processor }
    func now() -> Date { clock.now }
    var queue: DueSet { worker.queue }

    static let maxJobIDs = 500
    static let maxOlderThanJobs = 500
    static let decimalNumberBytes = Set("0123456789.eE+-".utf8)
    /// The largest `olderThan` (100 years, in seconds).
    static let maxOlderThanSeconds: Double = 100 * 365 * 24 * 3600

    /// Under the operators' group (`/v1/admin`, admin token required by its middleware).
    func addRoutes(to admin: RouterGroup<ClapperRequestContext>) {
        admin.get("jobs") { request, context in try await listJobs(request, context) }
        admin.post("reconcile") { request, context in try await reconcile(request, context) }
        admin.post("jobs/{id}/retry") { request, context in try await retry(request, context) }
        admin.get("requests/{requestId}") { request, context in try await lookUpRequest(request, context) }
        admin.get("spend") { request, context in try await spend(request, context) }
    }

    // MARK: GET /v1/admin/spend?userId=&from=&to=

    /// A user's estimated fal spend over UTC days `from`...`to` (`yyyy-MM-dd`, at most 366 days):
    /// the total, by model and by day, from the submits fal accepted.
    func spend(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        guard let userID = query["userId"].map(String.init), !userID.isEmpty else {
            throw APIError.badRequest("userId is required", code: "invalid_query")
        }
        let today = SpendLedger.day(now())
        let from = query["from"].map(String.init) ?? today, to = query["to"].map(String.init) ?? today
        guard let ledger = processor.spend, let days = SpendLedger.days(from: from, to: to) else {
            throw APIError.badRequest("from and to must be UTC dates (yyyy-MM-dd), from <= to, at most \(SpendLedger.maxDays) days", code: "invalid_query")
        }
        let spent = try await ledger.spend(userID: userID, days: days)
        var total = MicroUSD(0)
        var byModel: [String: MicroUSD] = [:]
        for (_, models) in spent {
            for (model, cost) in models {
                total = total + cost
                byModel[model, default: MicroUSD(0)] = byModel[model, default: MicroUSD(0)] + cost
            }
        }
        var w = JSONWriter()
        w.beginObject()
        w.field("userId", userID)
        w.field("from", from)
        w.field("to", to)
        w.rawField("estimatedSpendUsd", Array(total.json.utf8))
        w.key("byModel")
        w.beginObject()
        for (model, cost) in byModel.sorted(by: { $0.key < $1.key }) { w.rawField(model, Array(cost.json.utf8)) }
        w.endObject()
        w.key("byDay")
        w.beginObject()
        for (day, models) in spent where !models.isEmpty {
            w.rawField(day, Array(models.values.reduce(MicroUSD(0), +).json.utf8))
        }
        w.endObject()
        w.endObject()
        return Response.json(w.bytes)
    }

    // MARK: GET /v1/admin/requests/{requestId}

    /// Which job and task a fal request in flight belongs to (from the request index; finished
    /// tasks leave it), with the job as `GET /v1/admin/jobs` shows it.
    func lookUpRequest(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let requestID = try context.parameters.require("requestId")
        guard let member = try await processor.store.task(forRequest: requestID),
              let job = try await processor.store.load(member.jobID)?.job
        else { throw APIError.notFound("no task in flight has this fal request id") }
        let nextCheck = try await queue.nextCheck(of: member)
        struct Answer: Encodable {
            let requestId: String
            let jobId: String
            let task: String
            let job: AdminJob
        }
        return try Self.json(Answer(
            requestId: requestID,
            jobId: member.jobID,
            task: member.kind.rawValue,
            job: AdminJob(job, nextChecks: nextCheck.map { [member: $0] } ?? [:], catalog: processor.catalog, now: now())
        ))
    }

    // MARK: GET /v1/admin/jobs?status=&olderThan=&limit=

    /// Unfinished jobs (from the due set) and jobs the reconciler or an admin recently acted on,
    /// oldest first, each with its tasks' states, fal request ids and next check times.
    /// `status`: a job status (queued, running, completed, failed, canceled) or `unfinished`;
    /// `olderThan`: seconds since creation; `limit`: 1 to 500 (50).
    func listJobs(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let limit = try query["limit"].map { text in
            guard let value = Int(String(text)), (1...500).contains(value) else { throw APIError.badRequest("limit must be 1 to 500", code: "invalid_limit") }
            return value
        } ?? 50
        let olderThan = try query["olderThan"].map { text in
            // A decimal number (not `inf`, `nan`, hex or non-ASCII digits), at most 100 years: no
            // `1e300` reaches the date arithmetic.
            guard text.utf8.allSatisfy({ Self.decimalNumberBytes.contains($0) }), let value = Double(String(text)), value.isFinite, (0...Self.maxOlderThanSeconds).contains(value) else {
                throw APIError.badRequest("olderThan must be a number of seconds from 0 to \(Int(Self.maxOlderThanSeconds))", code: "invalid_older_than")
            }
            return value
        }
        let statusFilter = query["status"].map(String.init)
        if let statusFilter, statusFilter != "unfinished", JobStatus(rawValue: statusFilter) == nil {
            throw APIError.badRequest("status must be unfinished, queued, running, completed, failed or canceled", code: "invalid_status")
        }

        let entries = try await queue.entries(limit: 5000)
        var nextChecks: [DueSet.Member: Date] = [:]
        var jobIDs: [String] = []
        var seen: Set<String> = []
        for entry in entries {
            nextChecks[entry.member] = entry.nextCheck
            if seen.insert(entry.jobID).inserted { jobIDs.append(entry.jobID) }
        }
        for id in try await queue.recent(limit: 1000) where seen.insert(id).inserted { jobIDs.append(id) }

        let at = now()
        var jobs: [AdminJob] = []
        let store = processor.store
        for job in try await Self.inOrder(jobIDs, concurrency: 16, { try await store.load($0)?.job }) {
            guard let job else { continue }
            if let olderThan, at.timeIntervalSince(job.createdAt) < olderThan { continue }
            if let statusFilter {
                if statusFilter == "unfinished" ? job.isFinished : job.status.rawValue != statusFilter { continue }
            }
            jobs.append(AdminJob(job, nextChecks: nextChecks, catalog: processor.catalog, now: at))
        }
        jobs.sort { ($0.createdAtDate, $0.jobId) < ($1.createdAtDate, $1.jobId) }
        return try Self.json(AdminJobList(jobs: Array(jobs.prefix(limit)), count: min(jobs.count, limit), total: jobs.count))
    }

    // MARK: POST /v1/admin/reconcile

    /// `{"jobIds": […]}` or `{"olderThanSeconds": N}` (unfinished jobs created at least N seconds
    /// ago), with `"dryRun": true|false` (false). Reconciles now, asking fal even when a task's
    /// next check is not due, and answers a report per task. A dry run stores nothing.
    func reconcile(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let body = try AdminReconcileBody.parse(try await request.bodyBytes(context: context))
        var targets: [(String, [TaskKind])] = []
        if let ids = body.jobIds {
            for id in ids where !targets.contains(where: { $0.0 == id }) {
                targets.append((id, TaskKind.allCases))
            }
        } else if let older = body.olderThanSeconds {
            let cutoff = now().addingTimeInterval(-Double(older))
            var seen: Set<String> = []
            for entry in try await queue.entries(limit: 5000) where seen.insert(entry.jobID).inserted {
                guard targets.count < Self.maxOlderThanJobs, let job = try await processor.store.load(entry.jobID)?.job else { continue }
                if job.createdAt <= cutoff { targets.append((entry.jobID, job.tasks.map(\.kind))) }
            }
        }
        let (worker, queue, now, dryRun) = (self.worker, self.queue, self.now, body.dryRun)
        // Jobs side by side (at most 8 at once), each job's tasks in order; reports in target order.
        let perJob = try await Self.inOrder(targets, concurrency: 8) { target -> [ReconcileReport] in
            let (jobID, kinds) = target
            var reports: [ReconcileReport] = []
            for kind in kinds {
                let result = await worker.reconcile(jobID: jobID, kind: kind, now: now(), dryRun: dryRun, force: true)
                // A job without audio (or merge) has no such task: report the job once as not found only when it does not exist.
                if result.report.action == .notFound, kind != .video, !reports.isEmpty { continue }
                var report = result.report
                if !dryRun, report.action != .notFound {
                    report.nextCheckAt = try await queue.nextCheck(of: DueSet.Member(jobID: jobID, kind: kind)).map(Timestamp.iso8601)
                }
                reports.append(report)
            }
            return reports
        }
        return try Self.json(AdminReconcileAnswer(dryRun: body.dryRun, reports: perJob.flatMap { $0 }))
    }

    /// `transform` over `items`, at most `concurrency` at once, results in the items' order.
    static func inOrder<Item: Sendable, Value: Sendable>(
        _ items: [Item],
        concurrency: Int,
        _ transform: @escaping @Sendable (Item) async throws -> Value
    ) async throws -> [Value] {
        var results = [Value?](repeating: nil, count: items.count)
        try await withThrowingTaskGroup(of: (Int, Value).self) { group in
            var next = 0
            while next < min(concurrency, items.count) {
                let index = next
                group.addTask { (index, try await transform(items[index])) }
                next += 1
            }
            while let (index, value) = try await group.next() {
                results[index] = value
                if next < items.count {
                    let index = next
                    group.addTask { (index, try await transform(items[index])) }
                    next += 1
                }
            }
        }
        return results.map { $0! }
    }

    // MARK: POST /v1/admin/jobs/{id}/retry

    /// Resubmits the job's failed or timed-out tasks under new fal requests (the old request id
    /// stays in the task's history, so its late webhook is told apart). 409 when none is retryable.
    func retry(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let jobID = try context.parameters.require("id")
        guard let job = try await processor.store.load(jobID)?.job else { throw APIError.notFound("no such job") }
        guard !job.canceled else { throw APIError.conflict("the job was canceled", code: "not_retryable") }
        let retryable = job.tasks.filter { $0.status == .failed || $0.status == .timedOut }.map(\.kind)
        guard !retryable.isEmpty else {
            throw APIError.conflict("no failed or timed-out task to retry (job is \(job.status.rawValue))", code: "not_retryable")
        }
        var retried: [TaskKind] = []
        var latest = job
        for kind in retryable {
            let update = try await processor.apply(jobID: jobID, kind: kind, event: .retry)
            if update.transition.outcome.isChanged { retried.append(kind) }
            latest = update.job
        }
        guard !retried.isEmpty else {
            throw APIError.conflict("nothing was retryable any more (changed meanwhile)", code: "not_retryable")
        }
        await processor.submitDue(latest)
        await queue.noteRecent(jobID)
        guard let stored = try await processor.store.view(jobID) else { throw APIError.notFound("no such job") }
        return Self.jsonBytes(stored.view)
    }

    // MARK: Encoding

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func json(_ value: some Encodable) throws -> Response {
        jsonBytes(Array(try encoder.encode(value)))
    }

    static func jsonBytes(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// The body of `POST /v1/admin/reconcile`; unknown fields are rejected like the jobs API does.
struct AdminReconcileBody: Sendable, Decodable {
    var jobIds: [String]?
    var olderThanSeconds: Int?
    var dryRun: Bool

    static let allowed: Set<String> = ["jobIds", "olderThanSeconds", "dryRun"]
    /// Each job id: 1 to 200 code points (openapi's `maxLength`), at most 800 bytes.
    static let jobIDLimit = TextLimit(maxCodePoints: 200)

    enum CodingKeys: String, CodingKey { case jobIds, olderThanSeconds, dryRun }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jobIds = try c.decodeIfPresent([String].self, forKey: .jobIds)
        olderThanSeconds = try c.decodeIfPresent(Int.self, forKey: .olderThanSeconds)
        dryRun = try c.decodeIfPresent(Bool.self, forKey: .dryRun) ?? false
    }

    static func parse(_ body: [UInt8]) throws -> AdminReconcileBody {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw APIError.badRequest("the body must be a JSON object", code: "invalid_json")
        }
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError(.unprocessableContent, code: "unknown_field", message: "unknown field \(TextLimit.shown(unknown, codePoints: 64)); allowed: dryRun, jobIds, olderThanSeconds")
        }
        let parsed: AdminReconcileBody
        do {
            parsed = try JSONDecoder().decode(AdminReconcileBody.self, from: Data(body))
        } catch {
            throw APIError.badRequest("jobIds must be an array of strings, olderThanSeconds a whole number, dryRun a boolean", code: "invalid_field")
        }
        switch (parsed.jobIds, parsed.olderThanSeconds) {
        case (nil, nil), (.some, .some):
            throw APIError(.unprocessableContent, code: "validation_failed", message: "give exactly one of jobIds and olderThanSeconds")
        case (let ids?, nil):
            guard (1...AdminController.maxJobIDs).contains(ids.count), ids.allSatisfy({ !$0.isEmpty && Self.jobIDLimit.allows($0) }) else {
                throw APIError(.unprocessableContent, code: "validation_failed", message: "jobIds must hold 1 to \(AdminController.maxJobIDs) job ids of 1 to 200 characters")
            }
        case (nil, let seconds?):
            guard seconds >= 0 else { throw APIError(.unprocessableContent, code: "validation_failed", message: "olderThanSeconds must be 0 or more") }
        }
        return parsed
    }
}

struct AdminReconcileAnswer: Encodable {
    var dryRun: Bool
    var reports: [ReconcileReport]
}

struct AdminJobList: Encodable {
    var jobs: [AdminJob]
    var count: Int
    /// How many matched before `limit`.
    var total: Int
}

/// One job in the admin listing.
struct AdminJob: Encodable {
    struct Task: Encodable {
        var task: String
        var model: String
        var status: String
        var submitState: String
        var falRequestId: String?
        var previousRequestIds: [String]
        var attempts: Int
        var errorCode: String?
        var errorMessage: String?
        var submitStartedAt: String?
        var submittedAt: String?
        var deadline: String?
        /// The next reconciler check (nil when the task is not on the due set).
        var nextCheckAt: String?
    }

    var jobId: String
    var userId: String
    var status: String
    var version: Int
    var createdAt: String
    var updatedAt: String
    var ageSeconds: Double
    var tasks: [Task]
    let createdAtDate: Date

    enum CodingKeys: String, CodingKey { case jobId, userId, status, version, createdAt, updatedAt, ageSeconds, tasks }

    init(_ job: Job, nextChecks: [DueSet.Member: Date], catalog: ModelCatalog, now: Date) {
        jobId = job.id
        userId = job.userID
        status = job.status.rawValue
        version = job.version
        createdAt = Timestamp.iso8601(job.createdAt)
        updatedAt = Timestamp.iso8601(job.updatedAt)
        createdAtDate = job.createdAt
        ageSeconds = (now.timeIntervalSince(job.createdAt) * 1000).rounded() / 1000
        tasks = job.tasks.map { task in
            let submitState: String
            switch task.submitState {
            case .notStarted: submitState = "not_started"
            case .outcomeUnknown: submitState = "outcome_unknown"
            case .accepted: submitState = "accepted"
            }
            return Task(
                task: task.kind.rawValue,
                model: task.model,
                status: task.status.rawValue,
                submitState: submitState,
                falRequestId: task.falRequestID,
                previousRequestIds: task.previousRequestIDs,
                attempts: task.attempts,
                errorCode: task.error?.code,
                errorMessage: task.error?.message,
                submitStartedAt: task.submitStartedAt.map(Timestamp.iso8601),
                submittedAt: task.submittedAt.map(Timestamp.iso8601),
                deadline: task.status.isTerminal ? nil : catalog.deadline(for: task).map(Timestamp.iso8601),
                nextCheckAt: nextChecks[DueSet.Member(jobID: job.id, kind: task.kind)].map(Timestamp.iso8601)
            )
        }
    }
}
