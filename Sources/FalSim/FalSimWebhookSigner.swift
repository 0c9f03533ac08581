import Crypto
import Foundation

/// Signs webhook bodies as fal does and publishes the public key as a JWKS.
struct FalSimWebhookSigner: Sendable {
    let key: Curve25519.Signing.PrivateKey
    /// A key not in the JWKS, for the `wrong-signature` fault.
    let wrongKey = Curve25519.Signing.PrivateKey()
    let keyID: String
    let userID: String

    /// The signed message: `request_id \n user_id \n timestamp \n hex(sha256(body))`.
    static func message(requestID: String, userID: String, timestamp: String, body: [UInt8]) -> [UInt8] {
        let digest = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
        return Array("\(requestID)\n\(userID)\n\(timestamp)\n\(digest)".utf8)
    }

    /// The four `X-Fal-Webhook-*` headers for `body`.
    func headers(requestID: String, body: [UInt8], at date: Date, wrongKey useWrongKey: Bool) throws -> [(String, String)] {
        let timestamp = String(Int(date.timeIntervalSince1970))
        let message = Self.message(requestID: requestID, userID: userID, timestamp: timestamp, body: body)
        let signature = try (useWrongKey ? wrongKey : key).signature(for: message)
        return [
            ("X-Fal-Webhook-Request-Id", requestID),
            ("X-Fal-Webhook-User-Id", userID),
            ("X-Fal-Webhook-Timestamp", timestamp),
            ("X-Fal-Webhook-Signature", signature.map { String(format: "%02x", $0) }.joined()),
        ]
    }

    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"<base64url>","kid":"…"}]}`.
    var jwks: FalSimJSON {
        let x = key.publicKey.rawRepresentation.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return .object(["keys": .array([.object([
            "kty": .string("OKP"), "crv": .string("Ed25519"), "x": .string(x),
            "kid": .string(keyID), "use": .string("sig"), "alg": .string("EdDSA"),
        ])])])
    }
}
