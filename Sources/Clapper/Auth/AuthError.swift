/// Why a bearer token was refused. `message` is for the client and never contains the token.
public struct AuthError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `invalid_token`, `token_expired`, `token_not_yet_valid`, `unsupported_algorithm`, `auth_not_configured`.
    public let code: String
    public let message: String

    private init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    /// Not three base64url parts, or a header or payload that is not the expected JSON.
    public static let malformed = AuthError("invalid_token", "malformed token")
    public static let badSignature = AuthError("invalid_token", "invalid token signature")
    /// `alg` is not HS256 (`none` included).
    public static let unsupportedAlgorithm = AuthError("unsupported_algorithm", "token algorithm must be HS256")
    /// The header lists `crit` extensions this verifier does not understand.
    public static let unsupportedCritical = AuthError("invalid_token", "token has unsupported critical header parameters")
    public static let missingExpiry = AuthError("invalid_token", "token has no exp claim")
    public static let expired = AuthError("token_expired", "token has expired")
    public static let notYetValid = AuthError("token_not_yet_valid", "token is not valid yet")
    public static let missingSubject = AuthError("invalid_token", "token has no sub claim")
    public static let wrongIssuer = AuthError("invalid_token", "token issuer is not accepted")
    public static let wrongAudience = AuthError("invalid_token", "token audience is not accepted")
    /// `alg` is none of RS256, ES256, EdDSA (or HS256 without a shared secret).
    public static let unsupportedKeyAlgorithm = AuthError("unsupported_algorithm", "token algorithm must be HS256, RS256, ES256 or EdDSA")
    /// No key of the identity provider's JWKS verifies the token (after one refetch).
    public static let unknownKey = AuthError("invalid_token", "no key of the identity provider verifies this token")
    /// The JWKS could not be fetched: the token cannot be checked now.
    public static let keysUnavailable = AuthError("auth_unavailable", "the identity provider's keys are unavailable")
    /// No secret configured: every token is refused.
    public static let notConfigured = AuthError("auth_not_configured", "token authentication is not configured")
}
