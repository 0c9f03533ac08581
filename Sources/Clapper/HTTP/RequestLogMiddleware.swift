import Hummingbird
import Logging

/// Logs each request's method, path, status and duration at debug. Never the query string:
/// webhook and event-stream URLs carry tokens there. Never headers.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        context.logger.debug("request", metadata: [
            "method": "\(request.method)",
            "path": "\(request.uri.path)",
            "status": "\(response.status.code)",
            "duration": "\(ContinuousClock.now - start)",
        ])
        return response
    }
}
