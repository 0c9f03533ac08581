import HTTPTypes
import Hummingbird

/// CORS for the origins in `CLAPPER_CORS_ORIGINS` (`*` allows any): preflights (`OPTIONS` with
/// `Access-Control-Request-Method`) are answered here with 204 before routing or auth, and
/// responses to allowed origins carry `Access-Control-Allow-Origin` and the exposed headers.
/// `Last-Event-ID` is both allowed and exposed, for `EventSource` and `fetch`-based SSE clients.
/// Origins not listed get no CORS headers, so browsers block them. No list: no CORS at all.
struct CORSPolicyMiddleware<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>
    let allowsAny: Bool

    static var allowedMethods: String { "GET, POST, DELETE, OPTIONS" }
    static var allowedHeaders: String { "Authorization, Content-Type, Accept, Cache-Control, Last-Event-ID, Idempotency-Key, X-Request-Id" }
    static var exposedHeaders: String { "Last-Event-ID, X-Request-Id, Location, Retry-After" }

    init(origins: [String]) {
        let trimmed = origins.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.origins = Set(trimmed.filter { $0 != "*" })
        self.allowsAny = trimmed.contains("*")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], allowsAny || !origins.isEmpty else {
            return try await next(request, context)
        }
        let allowed = origin != "null" && (allowsAny || origins.contains(origin))
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            var headers: HTTPFields = [.vary: "Origin"]
            if allowed {
                headers[.accessControlAllowOrigin] = origin
                headers[.accessControlAllowMethods] = Self.allowedMethods
                headers[.accessControlAllowHeaders] = Self.allowedHeaders
                headers[.accessControlMaxAge] = "600"
            }
            return Response(status: .noContent, headers: headers)
        }
        var response = try await next(request, context)
        response.headers[values: .vary].append("Origin")
        if allowed {
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        }
        return response
    }
}
