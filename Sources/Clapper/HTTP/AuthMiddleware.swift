import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Who is calling: a user's HS256 bearer token sets `context.userID`; the admin token sets
/// `context.isAdmin` (and no user). A token that is present but wrong is a 401 here; routes that
/// need a caller ask with `requireUser()` / `requireAdmin()`. In dev mode a request without a
/// token acts as the user `dev`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ClapperRequestContext
    let verifier: JWTVerifier?
    let adminToken: String?
    let devMode: Bool

    static let devUser = "dev"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
                throw APIError.unauthorized("expected Authorization: Bearer <token>", code: "invalid_token")
            }
            let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            if let adminToken, Self.constantTimeEquals(token, adminToken) {
                context.isAdmin = true
            } else if let verifier {
                do {
                    context.userID = try verifier.verify(token, now: Date())
                } catch {
                    throw APIError.unauthorized(error.message, code: "invalid_token")
                }
            } else {
                throw APIError.unauthorized("bearer tokens are not configured", code: "invalid_token")
            }
        } else if devMode {
            context.userID = Self.devUser
        }
        context.logger[metadataKey: "user"] = context.userID.map { .string($0) }
        return try await next(request, context)
    }

    /// Compares two secrets without a timing signal: HMAC both with a random key, compare digests.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let key = SymmetricKey(size: .bits256)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(a.utf8), using: key)
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(b.utf8), using: key)
    }
}

extension ClapperRequestContext {
    /// The calling user, or 401.
    func requireUser() throws -> String {
        guard let userID else { throw APIError.unauthorized() }
        return userID
    }

    /// 401 unless the admin token was presented.
    func requireAdmin() throws {
        guard isAdmin else { throw APIError.unauthorized("admin token required") }
    }
}
