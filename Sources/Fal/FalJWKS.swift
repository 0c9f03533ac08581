import Crypto
import Foundation

/// Reads Ed25519 public keys out of a JWKS document `{"keys":[{"kty":"OKP","crv":"Ed25519","x":…}]}`.
/// Keys of other types, and malformed entries, are skipped.
enum FalJWKS {
    static func keys(from body: [UInt8]) -> [Curve25519.Signing.PublicKey] {
        struct Document: Decodable {
            struct Key: Decodable {
                var kty: String?
                var crv: String?
                var x: String?
            }
            var keys: [Key]?
        }
        guard let document = try? JSONDecoder().decode(Document.self, from: Data(body)) else { return [] }
        return (document.keys ?? []).compactMap { key in
            guard key.kty == "OKP", key.crv == "Ed25519", let x = key.x, let raw = base64URLDecoded(x), raw.count == 32 else { return nil }
            return try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
        }
    }

    static func base64URLDecoded(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 = base64.trimmingCharacters(in: CharacterSet(charactersIn: "="))
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
