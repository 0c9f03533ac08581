import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import Tracing

/// `/v1/jobs`: create, read, list and cancel the caller's jobs.
struct JobsController {
    let processor: JobProcessor
    let catalog: ModelCatalog
    let eventTokens: EventTokenSigner
    let publicURL: String
    /// Every user's default limits (`ClapperConfiguration.userLimits`; overrides are in Redis).
    var limits = UserLimits()
    /// Media custody: new jobs have their media copied; views presigned on read.
    var links = MediaLinks.off

    /// Under the users' group: `/v1/jobs`, `/v1/jobs/{id}`, `/v1/jobs/{id}/cancel`.
    func addRoutes(to users: RouterGroup<ClapperRequestContext>) {
        users.post("jobs") { request, context in try await create(request, context) }
        users.get("jobs") { request, context in try await list(request, context) }
        users.get("jobs/{id}") { request, context in try await get(request, context) }
        users.post("jobs/{id}/cancel") { request, context in try await cancel(request, context) }
    }

    func create(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let userID = try context.requireUser()
        let body = try await request.bodyBytes(context: context)
        let parsed = try CreateJobRequest.parse(body, catalog: catalog)
        var idempotency: (keyHash: String, bodyHash: String)?
        if let key = request.headers[.idempotencyKey] {
            guard !key.isEmpty, Self.idempotencyKeyLimit.allows(key) else {
                throw APIError.badRequest("Idempotency-Key must be 1 to 255 characters (Unicode code points; at most 1020 bytes)", code: "invalid_idempotency_key")
            }
            idempotency = (CreateJobRequest.canonicalBodyHash(Array(key.utf8)), CreateJobRequest.canonicalBodyHash(body))
        }
        var job = parsed.makeJob(id: processor.store.repository.keys.newJobID(for: userID), userID: userID, catalog: catalog, at: processor.now())
        job.mediaLifetimeSeconds = processor.mediaLifetime.map { Int($0.components.seconds) }
        // This request's span (the client's trace when it sent `traceparent`): the job's tasks join it.
        job.traceContext = ServiceContext.current.flatMap(processor.tracer.traceparent(of:))
        if links.configuration != nil { job.custody = true }
        switch try await processor.store.create(job, idempotency: idempotency, limits: limits) {
        case .refused(let refusal):
            Self.refusals(refusal.limit).increment()
            throw APIError(
                .tooManyRequests, code: "limit_\(refusal.limit.rawValue)", message: refusal.message,
                headers: [.retryAfter: String(refusal.retryAfterSeconds)]
            )
        case .created(let created):
            await processor.submitDue(created)
            return try await answer(jobID: created.id, userID: userID, status: .accepted)
        case .existing(let jobID, sameBody: true):
            return try await answer(jobID: jobID, userID: userID, status: .accepted)
        case .existing:
            throw APIError.conflict("this Idempotency-Key was used with another body", code: "idempotency_conflict")
        }
    }

    func get(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let userID = try context.requireUser()
        let jobID = try context.parameters.require("id")
        return try await answer(jobID: jobID, userID: userID, status: .ok, location: false)
    }

    func list(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let userID = try context.requireUser()
        // `Int(String)` takes ASCII digits only (no `1e3`, no `１２`) and is nil past Int: no trap.
        let limit = try request.uri.queryParameters["limit"].map { text in
            guard let value = Int(String(text)), (1...100).contains(value) else { throw APIError.badRequest("limit must be 1 to 100", code: "invalid_limit") }
            return value
        } ?? 20
        var cursor: (Int64, String)?
        if let text = request.uri.queryParameters["cursor"].map(String.init) {
            // `<createdAtMs>:<jobId>` as this route wrote it: a job id is a UUID, so 256 bytes is plenty.
            let parts = text.split(separator: ":", maxSplits: 1)
            guard text.utf8.count <= 256, parts.count == 2, let score = Int64(parts[0]) else { throw APIError.badRequest("malformed cursor", code: "invalid_cursor") }
            cursor = (score, String(parts[1]))
        }
        let page = try await processor.store.list(userID: userID, limit: limit, cursor: cursor)
        var body: [UInt8] = Array(#"{"jobs":["#.utf8)
        for (index, view) in page.views.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body += links.presigned(view)
        }
        body += Array(#"],"nextCursor":"#.utf8)
        body += page.next.map { Array(JobRepository.jsonString("\($0.0):\($0.1)").utf8) } ?? Array("null".utf8)
        body.append(UInt8(ascii: "}"))
        return Response.json(body)
    }

    func cancel(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let userID = try context.requireUser()
        let jobID = try context.parameters.require("id")
        guard let stored = try await processor.store.view(jobID), stored.userID == userID else { throw APIError.notFound("no such job") }
        let update = try await processor.cancel(jobID: jobID)
        if case .ignored(let reason) = update.transition.outcome {
            throw APIError.conflict(reason, code: "job_finished")
        }
        return try await answer(jobID: jobID, userID: userID, status: .ok)
    }

    static func refusals(_ limit: UserLimitRefusal.Limit) -> Counter {
        Counter(label: "clapper_user_limit_refusals_total", dimensions: [("limit", limit.rawValue)])
    }

    /// `Idempotency-Key`: 1 to 255 code points (openapi's `maxLength`), at most 1020 bytes.
    static let idempotencyKeyLimit = TextLimit(maxCodePoints: 255)

    /// The job's view with its `eventsUrl` (a signed, job-scoped link an EventSource can open,
    /// valid for `CLAPPER_EVENT_TOKEN_TTL_SECONDS`: every read gives a fresh one).
    private func answer(jobID: String, userID: String, status: HTTPResponse.Status, location: Bool = true) async throws -> Response {
        guard let stored = try await processor.store.view(jobID), stored.userID == userID else { throw APIError.notFound("no such job") }
        let eventsURL = eventTokens.eventsURL(base: publicURL, jobID: jobID, userID: userID, now: processor.now())
        var view = links.presigned(stored.view)
        // The stored view is an object: add eventsUrl as its last member.
        if view.last == UInt8(ascii: "}") {
            view.removeLast()
            view += Array(#","eventsUrl":"#.utf8) + Array(JobRepository.jsonString(eventsURL).utf8) + [UInt8(ascii: "}")]
        }
        return Response.json(view, status: status, headers: location ? [.location: "/v1/jobs/\(jobID)"] : [:])
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
}
