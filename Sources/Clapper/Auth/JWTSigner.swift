import Crypto
import Foundation

/// Makes HS256 JWTs: for tests and local development (`ops/run`), never used to accept a request.
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
        struct Header: Encodable { let alg: String; let typ = "JWT" }
        struct Claims: Encodable {
            let sub: String?
            let exp: Int64?
            let nbf: Int64?
            let iss: String?
            let aud: String?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let header = (try? encoder.encode(Header(alg: algorithm))) ?? Data()
        let claims = Claims(
            sub: subject,
            exp: expiresAt.map { Int64($0.timeIntervalSince1970.rounded(.down)) },
            nbf: notBefore.map { Int64($0.timeIntervalSince1970.rounded(.down)) },
            iss: issuer,
            aud: audience
        )
        let payload = (try? encoder.encode(claims)) ?? Data()
        return sign(header: Array(header), payload: Array(payload))
    }

    /// Signs arbitrary header and payload JSON bytes (tests build odd tokens with it).
    public func sign(header: [UInt8], payload: [UInt8]) -> String {
        let input = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: key)
        return input + "." + Base64URL.encode(mac)
    }
}
