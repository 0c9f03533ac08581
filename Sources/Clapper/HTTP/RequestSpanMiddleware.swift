import HTTPTypes
import Hummingbird
import Tracing

/// A server span per request, in the trace the client's `traceparent` names (a new one when it
/// sends none), named after the route (`POST /v1/jobs`). Only in front when tracing is on.
/// Records method, route and status; never the query (webhook URLs carry their token there).
struct RequestSpanMiddleware: RouterMiddleware {
    typealias Context = ClapperRequestContext
    let tracer: ClapperTracer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let tracing = tracer.tracer else { return try await next(request, context) }
        let parent = tracer.extract { name in HTTPField.Name(name).flatMap { request.headers[$0] } } ?? .topLevel
        let method = request.method.rawValue
        let span = tracing.startSpan("\(method)", context: parent, ofKind: .server, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
        defer { span.end() }
        span.attributes["http.request.method"] = method
        do {
            let response = try await ServiceContext.$current.withValue(span.context) { try await next(request, context) }
            Self.name(span, method: method, context: context, status: response.status.code)
            return response
        } catch {
            Self.name(span, method: method, context: context, status: (error as? any HTTPResponseError)?.status.code ?? 500)
            throw error
        }
    }

    private static func name(_ span: any Span, method: String, context: Context, status: Int) {
        if let route = context.endpointPath {
            span.operationName = "\(method) \(route)"
            span.attributes["http.route"] = route
        }
        span.attributes["http.response.status_code"] = status
        if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
    }
}
