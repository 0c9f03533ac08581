import Crypto
import Foundation

/// Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`,
/// the secret given to the operator as `whsec_<base64 of its bytes>`.
struct OutboundSignature: Sendable {
    let key: SymmetricKey

    /// nil when `secret` is not `whsec_` and base64 of at least 24 bytes.
    init?(secret: String) {
        guard secret.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(secret.dropFirst(6))), bytes.count >= 24 else { return nil }
        key = SymmetricKey(data: bytes)
    }

    /// A new endpoint secret: 32 random bytes.
    static func newSecret() -> String {
        "whsec_" + Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }).base64EncodedString()
    }

    /// The three headers of one delivery attempt.
    func headers(messageID: String, timestamp: Int64, body: [UInt8]) -> [String: String] {
        var signed = Array("\(messageID).\(timestamp).".utf8)
        signed += body
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: key)
        return [
            "webhook-id": messageID,
            "webhook-timestamp": String(timestamp),
            "webhook-signature": "v1," + Data(mac).base64EncodedString(),
        ]
    }
}
