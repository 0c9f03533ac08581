import Fal
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Tracing

/// `POST /v1/webhooks/fal/{jobId}/{task}?token=…`: fal's callbacks. The URL token is checked,
/// then fal's Ed25519 signature over the raw body, before anything is parsed; nothing is stored
/// for a webhook that fails either. Repeats and late arrivals are answered 200 so fal stops retrying.
struct WebhookController {
    let processor: JobProcessor
    let tokens: WebhookToken
    /// nil when verification is turned off (`CLAPPER_WEBHOOK_VERIFY=false`).
    let verifier: FalWebhookVerifier?
    let catalog: ModelCatalog

    /// Outside the users' group: fal is no user; the URL token and fal's signature decide.
    func addRoutes(to group: RouterGroup<ClapperRequestContext>) {
        group.post("v1/webhooks/fal/{jobId}/{task}") { request, context in try await receive(request, context) }
    }

    func receive(_ request: Request, _ context: ClapperRequestContext) async throws -> Response {
        let jobID = try context.parameters.require("jobId")
        guard let kind = TaskKind(rawValue: try context.parameters.require("task")) else {
            throw APIError.notFound("no such task")
        }
        guard let token = request.uri.queryParameters["token"].map(String.init), tokens.verify(token: token, jobID: jobID, kind: kind) else {
            Self.outcomes(.rejected).increment()
            throw APIError.unauthorized("invalid webhook token", code: "invalid_webhook_token")
        }
        // The attempt the URL was made for (absent in URLs made before attempts were named).
        var attempt: Int?
        if let text = request.uri.queryParameters["attempt"] {
            guard let value = Int(String(text)), value >= 0 else {
                throw APIError.badRequest("attempt must be a whole number", code: "invalid_attempt")
            }
            attempt = value
        }
        let body = try await request.bodyBytes(context: context)
        // `clapper_webhook_duration_seconds{stage}`: `total` (signature, parse, apply), and `apply`
        // alone (read, rules, script).
        let start = ContinuousClock.now
        defer { Self.totalDuration.record(duration: start.duration(to: .now)) }
        if let verifier {
            do {
                try await verifier.verify(headers: FalWebhookHeaders { name in HTTPField.Name(name).flatMap { request.headers[$0] } }, body: body)
            } catch {
                Self.outcomes(.rejected).increment()
                context.logger.notice("webhook signature rejected", metadata: ["job": "\(jobID)", "reason": "\(error.code)"])
                throw APIError.unauthorized("webhook signature rejected: \(error.code)", code: "invalid_signature")
            }
        }
        let webhook: FalWebhook
        do {
            webhook = try FalWebhook(parsing: body)
        } catch {
            throw APIError.badRequest("malformed webhook body", code: "invalid_webhook")
        }
        // A job that does not exist is a 404 (`ClapperError.notFound`, mapped at the edge).
        let applyStart = ContinuousClock.now
        let tracer = processor.tracer
        let update = try await tracer.span("fal.webhook") { span in
            span?.attributes["clapper.job_id"] = jobID
            span?.attributes["clapper.task"] = kind.rawValue
            span?.attributes["fal.request_id"] = webhook.requestID
            let update = try await processor.applyWebhook(jobID: jobID, kind: kind, attempt: attempt, webhook: webhook)
            // fal sends no trace context: the span that submitted the task (on any instance) is linked.
            tracer.link(span, to: update.job.task(kind)?.traceContext)
            return update
        }
        Self.applyDuration.record(duration: applyStart.duration(to: .now))
        guard update.job.task(kind) != nil else { throw APIError.notFound("no such task") }
        let applied = update.transition.outcome.isChanged
        guard update.replicated else {
            // Stored on the master only: a failover now would lose it. fal sends it again; the
            // repeat is ignored if this one survived, applied if it did not.
            Self.unreplicated.increment()
            context.logger.warning("webhook stored but not replicated in time; answering 503 so fal retries", metadata: ["job": "\(jobID)"])
            throw APIError.unavailable("change not yet replicated; retry", code: "not_replicated")
        }
        Self.outcomes(applied ? .applied : .ignored).increment()
        return Self.acknowledge(applied: applied, version: update.job.version)
    }

    static func acknowledge(applied: Bool, version: Int) -> Response {
        var w = JSONWriter()
        w.beginObject()
        w.field("applied", applied)
        w.field("version", version)
        w.endObject()
        return Response.json(w.bytes)
    }

    enum Outcome: String { case applied, ignored, rejected }

    private static let unreplicated = Counter(label: "clapper_webhooks_unreplicated_total")

    /// Made once: a `Counter` made per call looks its series up in the metrics backend each time.
    private static let applied = Counter(label: "clapper_webhooks_total", dimensions: [("outcome", Outcome.applied.rawValue)])
    private static let ignored = Counter(label: "clapper_webhooks_total", dimensions: [("outcome", Outcome.ignored.rawValue)])
    private static let rejected = Counter(label: "clapper_webhooks_total", dimensions: [("outcome", Outcome.rejected.rawValue)])

    static let totalDuration = Metrics.Timer(label: "clapper_webhook_duration_seconds", dimensions: [("stage", "total")])
    static let applyDuration = Metrics.Timer(label: "clapper_webhook_duration_seconds", dimensions: [("stage", "apply")])

    static func outcomes(_ outcome: Outcome) -> Counter {
        switch outcome {
        case .applied: applied
        case .ignored: ignored
        case .rejected: rejected
        }
    }
}
