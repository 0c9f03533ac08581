import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Who is calling, from the `Authorization` header: the admin token, a user's bearer token
/// (HS256 with the shared secret, or RS256/ES256/EdDSA from the identity provider's JWKS), or
/// nobody. A token that is present but wrong is a 401. In dev mode no token means the user `dev`.
struct Authenticator: Sendable {
    enum Caller: Sendable, Equatable {
        case user(String)
        case admin
        case anonymous
    }

    /// HS256 tokens (`CLAPPER_AUTH_JWT_SECRET`).
    let verifier: JWTVerifier?
    /// Tokens signed with the identity provider's keys (`CLAPPER_AUTH_JWKS_URL`).
    var jwks: JWKSTokenVerifier? = nil
    let adminToken: String?
    let devMode: Bool

    static let devUser = "dev"

    func caller(of request: Request) async throws -> Caller {
        guard let header = request.headers[.authorization] else {
            return devMode ? .user(Self.devUser) : .anonymous
        }
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
            throw APIError.unauthorized("expected Authorization: Bearer <token>", code: "invalid_token")
        }
        let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        if let adminToken, Self.constantTimeEquals(token, adminToken) { return .admin }
        do {
            return .user(try await user(of: token))
        } catch where error == .keysUnavailable {
            throw APIError.unavailable(error.message, code: error.code)
        } catch {
            throw APIError.unauthorized(error.message, code: "invalid_token")
        }
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

/// The users' routes (`/v1/jobs`, `/v1/events`): a user's token sets `context.userID`; a route
/// that needs a user asks with `requireUser()` (the admin token carries no user; event streams
/// may carry a signed `?token=` instead).
struct UserAuthMiddleware: RouterMiddleware {
    typealias Context = ClapperRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if case .user(let user) = try await authenticator.caller(of: request) {
            context.userID = user
            context.logger[metadataKey: "user"] = .string(user)
        }
        return try await next(request, context)
    }
}

/// The operators' routes (`/v1/admin`): the admin token, or 401.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = ClapperRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard try await authenticator.caller(of: request) == .admin else {
            throw APIError.unauthorized("admin token required")
        }
        var context = context
        context.isAdmin = true
        return try await next(request, context)
    }
}

extension ClapperRequestContext {
    /// The calling user, or 401.
    func requireUser() throws -> String {
        guard let userID else { throw APIError.unauthorized() }
        return userID
    }
}
