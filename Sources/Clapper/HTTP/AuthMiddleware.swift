import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Who is calling: a user's bearer token (HS256 with the shared secret, or RS256/ES256/EdDSA
/// from the identity provider's JWKS) sets `context.userID`; the admin token sets
/// `context.isAdmin` (and no user). A token that is present but wrong is a 401 here; routes that
/// need a caller ask with `requireUser()` / `requireAdmin()`. In dev mode a request without a
/// token acts as the user `dev`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ClapperRequestContext
    /// HS256 tokens (`CLAPPER_AUTH_JWT_SECRET`).
    let verifier: JWTVerifier?
    /// Tokens signed with the identity provider's keys (`CLAPPER_AUTH_JWKS_URL`).
    var jwks: JWKSTokenVerifier? = nil
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
            } else {
                do {
                    context.userID = try await user(of: token)
                } catch where error == .keysUnavailable {
                    throw APIError.unavailable(error.message, code: error.code)
                } catch {
                    throw APIError.unauthorized(error.message, code: "invalid_token")
                }
            }
        } else if devMode {
            context.userID = Self.devUser
        }
        context.logger[metadataKey: "user"] = context.userID.map { .string($0) }
        return try await next(request, context)
    }

    /// HS256 tokens are checked with the shared secret, other algorithms against the JWKS.
    private func user(of token: String) async throws(AuthError) -> String {
        let now = Date()
        if let verifier {
            do {
                return try verifier.verify(token, now: now)
            } catch where error == .unsupportedAlgorithm && jwks != nil {
                // Not HS256: the identity provider's keys decide below.
            }
        }
        guard let jwks else { throw verifier == nil ? .notConfigured : .unsupportedAlgorithm }
        return try await jwks.verify(token, now: now)
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
