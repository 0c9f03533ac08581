import Foundation
import JWTKit

/// The claims Clapper reads from a user's JWT, in jwt-kit's claim types (`aud` as a string or an
/// array of strings; dates as JSON numbers, fractions allowed). One type for reading
/// (`JWTVerifier`, `JWKSTokenVerifier`) and writing (`JWTSigner`).
struct JWTClaims: JWTPayload, Equatable {
    var sub: SubjectClaim?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?

    /// jwt-kit calls this after the signature; Clapper checks the claims itself with its own
    /// clock and leeway (`ClaimRules`), so here there is nothing to do.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The claim checks every verifier shares, after the signature was checked: `exp` (required)
/// after `now - leeway`, `nbf` (if present) at or before `now + leeway`, `iss` / `aud` when
/// configured, and a non-empty `sub`, which is returned.
struct ClaimRules: Sendable {
    var leeway: TimeInterval
    var issuer: String?
    var audience: String?

    func subject(of claims: JWTClaims, now: Date) throws(AuthError) -> String {
        guard let exp = claims.exp?.value else { throw .missingExpiry }
        guard now.addingTimeInterval(-leeway) < exp else { throw .expired }
        if let nbf = claims.nbf?.value, now.addingTimeInterval(leeway) < nbf { throw .notYetValid }
        if let issuer, claims.iss?.value != issuer { throw .wrongIssuer }
        if let audience, !(claims.aud?.value.contains(audience) ?? false) { throw .wrongAudience }
        guard let sub = claims.sub?.value, !sub.isEmpty else { throw .missingSubject }
        return sub
    }
}

/// A compact JWT checked before any key is used, because jwt-kit does not: at most
/// `JWTVerifier.maxTokenLength` bytes, three strict base64url parts, a JSON header whose `alg` is
/// exactly one of `algorithms` (so `none`, `hs256` and algorithms not named are refused; jwt-kit
/// lets an HMAC key verify a token whatever its header says), a string `kid` if any, and no
/// `crit` (no extension is understood).
struct JWTParts {
    let alg: String
    let kid: String?
    /// `header.payload`, the bytes the signature covers.
    let signingInput: [UInt8]
    let signature: [UInt8]

    init(_ token: String, algorithms: Set<String>, otherwise refusal: AuthError) throws(AuthError) {
        guard token.utf8.count <= JWTVerifier.maxTokenLength else { throw .malformed }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerBytes = Base64URL.decode(parts[0]),
              let signature = Base64URL.decode(parts[2]),
              let header = try? JSONDecoder().decode(JWTHeader.self, from: Data(headerBytes)),
              let alg = header.alg
        else { throw .malformed }
        guard algorithms.contains(alg) else { throw refusal }
        if let kid = header.fields["kid"], kid != .null, header.kid == nil { throw .malformed }
        if let crit = header.fields["crit"], crit != .null { throw .unsupportedCritical }
        self.alg = alg
        self.kid = header.kid
        self.signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        self.signature = signature
    }
}
