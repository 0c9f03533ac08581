import Crypto
import Foundation
import JWTKit

/// Verifies `Authorization: Bearer` JWTs signed with HS256 and a shared secret
/// (`CLAPPER_AUTH_JWT_SECRET`) and returns the user id (`sub`).
///
/// Checks, in order: the token's form and header (`JWTParts`: `alg` exactly `HS256`, no `crit`);
/// the HMAC-SHA256 signature over `header.payload`, compared in constant time; then the payload,
/// decoded by jwt-kit into `JWTClaims` and judged by `ClaimRules`.
///
/// Synchronous, as its callers are: jwt-kit verifies only through its `JWTKeyCollection` actor
/// (async), so the one HMAC is swift-crypto's, and jwt-kit decodes the claims once it passed.
public struct JWTVerifier: Sendable {
    /// Longer tokens are refused before any work is done.
    public static let maxTokenLength = 8192

    private let key: SymmetricKey
    private let configured: Bool
    public var leeway: TimeInterval
    public var issuer: String?
    public var audience: String?

    /// - Parameters:
    ///   - secret: the HS256 key (UTF-8 bytes of the string). Empty: every token is refused.
    ///   - leeway: clock skew allowed on `exp` and `nbf`, in seconds.
    ///   - issuer, audience: when set, `iss` must equal `issuer` and `aud` must contain `audience`.
    public init(secret: String, leeway: TimeInterval = 0, issuer: String? = nil, audience: String? = nil) {
        self.key = SymmetricKey(data: Array(secret.utf8))
        self.configured = !secret.isEmpty
        self.leeway = leeway
        self.issuer = issuer
        self.audience = audience
    }

    /// The user id (`sub`) of a valid token at `now`.
    public func verify(_ token: String, now: Date) throws(AuthError) -> String {
        guard configured else { throw .notConfigured }
        let parts = try JWTParts(token, algorithms: ["HS256"], otherwise: .unsupportedAlgorithm)
        guard HMAC<SHA256>.isValidAuthenticationCode(parts.signature, authenticating: parts.signingInput, using: key) else {
            throw .badSignature
        }
        guard let claims = try? DefaultJWTParser().parse(Array(token.utf8), as: JWTClaims.self).payload else { throw .malformed }
        return try ClaimRules(leeway: leeway, issuer: issuer, audience: audience).subject(of: claims, now: now)
    }
}
