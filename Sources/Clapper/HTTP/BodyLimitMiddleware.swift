import HTTPTypes
import Hummingbird

/// Answers 413 to a declared body over the limit before reading it, and tells handlers the
/// limit so a chunked body that grows past it fails the same way when collected.
struct BodyLimitMiddleware: RouterMiddleware {
    typealias Context = ClapperRequestContext
    let limit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, code: "payload_too_large", message: "request body is larger than \(limit) bytes")
        }
        var context = context
        context.bodyLimit = limit
        return try await next(request, context)
    }
}

extension Request {
    /// The whole body, at most the context's limit (413 past it).
    func bodyBytes(context: ClapperRequestContext) async throws -> [UInt8] {
        do {
            let buffer = try await body.collect(upTo: context.bodyLimit)
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.contentTooLarge, code: "payload_too_large", message: "request body is larger than \(context.bodyLimit) bytes")
        }
    }
}
