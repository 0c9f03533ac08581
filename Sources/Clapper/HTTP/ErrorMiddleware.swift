import HTTPTypes
import Hummingbird
import Logging

/// The one place errors become HTTP answers: every 4xx and 5xx has the body
/// `{"error":{"code","message"}}`. Unknown errors are logged and answered as a bare 500;
/// their text never reaches the client. A path that exists under another method gets 405.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: KnownRoutes

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            let response = try await next(request, context)
            return response
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as ClapperError {
            let status = Self.status(for: error.code)
            if status.code >= 500 {
                context.logger.warning("request failed", metadata: ["error": "\(error)"])
            }
            return try APIError(status, code: error.code.description, message: status.code >= 500 && error.code != .contention ? "service unavailable" : error.message)
                .response(from: request, context: context)
        } catch let error as HTTPError {
            return try translate(error, request: request, context: context).response(from: request, context: context)
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            return try APIError(error.status, code: Self.code(for: error.status), message: error.status.reasonPhrase).response(from: request, context: context)
        } catch {
            context.logger.error("request failed", metadata: ["error.type": "\(type(of: error))", "error": "\(error)"])
            return try APIError(.internalServerError, code: "internal", message: "internal error").response(from: request, context: context)
        }
    }

    private func translate(_ error: HTTPError, request: Request, context: Context) -> APIError {
        if error.status == .notFound {
            let allowed = routes.methods(forPath: request.uri.path)
            if !allowed.isEmpty, !allowed.contains(request.method) {
                let allow = allowed.map(\.rawValue).sorted().joined(separator: ", ")
                return APIError(.methodNotAllowed, code: "method_not_allowed", message: "\(request.method) is not allowed here; allowed: \(allow)", headers: [.allow: allow])
            }
            return .notFound("no route for \(request.method) \(request.uri.path)")
        }
        let message = error.status.code < 500 ? (error.body ?? error.status.reasonPhrase) : "internal error"
        return APIError(error.status, code: Self.code(for: error.status), message: message, headers: error.headers)
    }

    /// The one place a domain error's code becomes an HTTP status.
    static func status(for code: ClapperError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidJSON, .invalidField: .badRequest
        case .unknownField, .validationFailed: .unprocessableContent
        case .notFound: .notFound
        case .timeout: .gatewayTimeout
        default: .serviceUnavailable
        }
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 409: "conflict"
        case 413: "payload_too_large"
        case 415: "unsupported_media_type"
        case 422: "validation_failed"
        case 429: "rate_limited"
        case 503: "unavailable"
        default: status.code < 500 ? "client_error" : "internal"
        }
    }
}
