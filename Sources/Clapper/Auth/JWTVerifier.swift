import Crypto
import Foundation

/// Verifies `Authorization: Bearer` JWTs signed with HS256 and a shared secret
/// (`CLAPPER_AUTH_JWT_SECRET`) and returns the user id (`sub`).
///
/// Checks, in order: three base64url parts; header `alg` exactly `HS256` (so `none` and every
/// other algorithm are refused, whatever the key); no `crit`; the HMAC-SHA256 signature over
/// `header.payload`, compared in constant time; then the claims: `exp` (required) must be after
/// `now - leeway`, `nbf` (if present) at or before `now + leeway`, `iss` / `aud` when configured,
/// and a non-empty string `sub`.
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
        guard token.utf8.count <= Self.maxTokenLength else { throw .malformed }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerBytes = Base64URL.decode(parts[0]),
              let signature = Base64URL.decode(parts[2])
        else { throw .malformed }

        guard let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes)) else { throw .malformed }
        guard header.alg == "HS256" else { throw .unsupportedAlgorithm }
        guard header.crit == nil else { throw .unsupportedCritical }

        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signingInput, using: key) else {
            throw .badSignature
        }

        return try subject(ofPayload: parts[1], now: now)
    }

    /// The claim checks every verifier shares (after the signature was checked): `exp`, `nbf`,
    /// `iss`, `aud`, and a non-empty `sub`, which is returned.
    func subject(ofPayload part: Substring, now: Date) throws(AuthError) -> String {
        guard let payloadBytes = Base64URL.decode(part),
              let claims = try? JSONDecoder().decode(Claims.self, from: Data(payloadBytes))
        else { throw .malformed }
        let seconds = now.timeIntervalSince1970
        guard let exp = claims.exp else { throw .missingExpiry }
        guard seconds < exp + leeway else { throw .expired }
        if let nbf = claims.nbf, seconds + leeway < nbf { throw .notYetValid }
        if let issuer, claims.iss != issuer { throw .wrongIssuer }
        if let audience, !(claims.aud?.values.contains(audience) ?? false) { throw .wrongAudience }
        guard let sub = claims.sub, !sub.isEmpty else { throw .missingSubject }
        return sub
    }

    struct Header: Decodable {
        var alg: String
        var typ: String?
        var crit: [String]?
    }

    struct Claims: Decodable {
        var sub: String?
        var exp: Double?
        var nbf: Double?
        var iss: String?
        var aud: Audience?
    }

    /// `aud` is a string or an array of strings.
    struct Audience: Decodable {
        var values: [String]

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let one = try? c.decode(String.self) {
                values = [one]
            } else {
                values = try c.decode([String].self)
            }
        }
    }
}
