import Crypto
import Foundation
import JWTKit

/// Makes HS256 JWTs: for tests and local development (`ops/run`), never used to accept a request.
/// Synchronous and able to write odd headers (tests need both), so it signs with swift-crypto's
/// HMAC rather than jwt-kit's async `JWTKeyCollection.sign`; the claims are jwt-kit's types.
public struct JWTSigner: Sendable {
    private let key: SymmetricKey

    public init(secret: String) {
        self.key = SymmetricKey(data: Array(secret.utf8))
    }

    /// A token for `subject`; dates are written as whole Unix seconds.
    public func token(
        subject: String?,
        expiresAt: Date?,
        notBefore: Date? = nil,
        issuer: String? = nil,
        audience: String? = nil,
        algorithm: String = "HS256"
    ) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.dateEncodingStrategy = .integerSecondsSince1970
        let header = (try? encoder.encode(JWTHeader(fields: ["alg": .string(algorithm), "typ": .string("JWT")]))) ?? Data()
        let claims = JWTClaims(
            sub: subject.map(SubjectClaim.init(value:)),
            exp: expiresAt.map { ExpirationClaim(value: Self.wholeSeconds($0)) },
            nbf: notBefore.map { NotBeforeClaim(value: Self.wholeSeconds($0)) },
            iss: issuer.map(IssuerClaim.init(value:)),
            aud: audience.map { AudienceClaim(value: [$0]) }
        )
        let payload = (try? encoder.encode(claims)) ?? Data()
        return sign(header: Array(header), payload: Array(payload))
    }

    /// Signs arbitrary header and payload JSON bytes (tests build odd tokens with it).
    public func sign(header: [UInt8], payload: [UInt8]) -> String {
        let input = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: key)
        return input + "." + Base64URL.encode(Array(mac))
    }

    /// Rounded down, as before (jwt-kit's integer strategy rounds toward zero).
    private static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }
}
