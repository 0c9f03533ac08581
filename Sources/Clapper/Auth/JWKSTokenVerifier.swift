import Crypto
import Fal
import Foundation
import Logging
import _CryptoExtras

/// Verifies users' bearer JWTs signed by an identity provider whose public keys are published
/// as a JWKS (`CLAPPER_AUTH_JWKS_URL`): RS256, ES256 and EdDSA. Keys are cached for an hour; a
/// token whose `kid` is unknown (key rotation) triggers one refetch, at most once a minute, so
/// junk tokens cannot drive outbound fetches. Claims are checked as for HS256 (`JWTVerifier`).
public actor JWKSTokenVerifier {
    private let url: URL
    private let transport: any HTTPTransport
    private nonisolated let claims: JWTVerifier
    private let logger: Logger
    private let cacheLifetime: TimeInterval
    private let minimumRefetch: TimeInterval
    private var keys: [Key] = []
    private var fetchedAt: Date?
    private var lastAttempt: Date?
    /// Fetches performed (for tests and metrics).
    public private(set) var fetchCount = 0

    enum Key: Sendable {
        case rsa(kid: String?, _RSA.Signing.PublicKey)
        case p256(kid: String?, P256.Signing.PublicKey)
        case ed25519(kid: String?, Curve25519.Signing.PublicKey)

        var kid: String? {
            switch self {
            case .rsa(let kid, _), .p256(let kid, _), .ed25519(let kid, _): kid
            }
        }
    }

    public init(
        url: URL,
        transport: any HTTPTransport = URLSessionTransport(),
        leeway: TimeInterval = 30,
        issuer: String? = nil,
        audience: String? = nil,
        cacheLifetime: TimeInterval = 3600,
        minimumRefetch: TimeInterval = 60,
        logger: Logger = Logger(label: "auth.jwks")
    ) {
        self.url = url
        self.transport = transport
        // Only its claim checks are used; the secret is never used for a signature.
        self.claims = JWTVerifier(secret: "-", leeway: leeway, issuer: issuer, audience: audience)
        self.cacheLifetime = cacheLifetime
        self.minimumRefetch = minimumRefetch
        self.logger = logger
    }

    /// The user id (`sub`) of a valid token at `now`. The signature is checked outside the actor
    /// (many tokens at once); only the key cache is isolated.
    public nonisolated func verify(_ token: String, now: Date) async throws(AuthError) -> String {
        guard token.utf8.count <= JWTVerifier.maxTokenLength else { throw .malformed }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerBytes = Base64URL.decode(parts[0]),
              let signature = Base64URL.decode(parts[2]),
              let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes))
        else { throw .malformed }
        guard header.crit == nil else { throw .unsupportedCritical }
        guard ["RS256", "ES256", "EdDSA"].contains(header.alg) else { throw .unsupportedKeyAlgorithm }
        let signed = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))

        let keys = await currentKeys(now: now)
        if !Self.verifies(signature, signed, alg: header.alg, kid: header.kid, keys: keys) {
            // A key id we do not know may be a rotation: fetch again (at most once a minute). A
            // bad signature under a known key is just bad, and drives no fetch.
            let known = header.kid.map { kid in keys.contains { $0.kid == kid } } ?? !keys.isEmpty
            guard !known, await refresh(now: now),
                  Self.verifies(signature, signed, alg: header.alg, kid: header.kid, keys: await currentKeys(now: now))
            else {
                throw keys.isEmpty ? .keysUnavailable : .unknownKey
            }
        }
        return try claims.subject(ofPayload: parts[1], now: now)
    }

    /// The cached keys, fetched first when the cache is empty or older than its lifetime.
    private func currentKeys(now: Date) async -> [Key] {
        if fetchedAt.map({ now.timeIntervalSince($0) > cacheLifetime }) ?? true {
            await refresh(now: now)
        }
        return keys
    }

    private static func verifies(_ signature: [UInt8], _ signed: [UInt8], alg: String, kid: String?, keys: [Key]) -> Bool {
        keys.contains { key in
            if let kid, let keyID = key.kid, kid != keyID { return false }
            switch (alg, key) {
            case ("RS256", .rsa(_, let publicKey)):
                return publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: signed), padding: .insecurePKCS1v1_5)
            case ("ES256", .p256(_, let publicKey)):
                guard let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
                return publicKey.isValidSignature(ecdsa, for: SHA256.hash(data: signed))
            case ("EdDSA", .ed25519(_, let publicKey)):
                return publicKey.isValidSignature(signature, for: signed)
            default:
                return false
            }
        }
    }

    /// Fetches the JWKS unless the last attempt was less than `minimumRefetch` ago; true when
    /// new keys were stored.
    @discardableResult
    private func refresh(now: Date) async -> Bool {
        if let lastAttempt, now.timeIntervalSince(lastAttempt) < minimumRefetch { return false }
        lastAttempt = now
        fetchCount += 1
        do {
            let response = try await transport.send(HTTPTransportRequest(method: "GET", url: url, headers: ["Accept": "application/json"]), timeout: .seconds(10))
            guard response.isSuccess else {
                logger.warning("JWKS fetch failed", metadata: ["status": "\(response.status)"])
                return false
            }
            let parsed = try Self.keys(fromJWKS: response.body)
            guard !parsed.isEmpty else {
                logger.warning("JWKS has no usable key")
                return false
            }
            keys = parsed
            fetchedAt = now
            return true
        } catch {
            logger.warning("JWKS fetch failed", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The RSA, P-256 and Ed25519 signing keys of a JWKS document; others are skipped.
    static func keys(fromJWKS body: [UInt8]) throws -> [Key] {
        struct JWKS: Decodable { let keys: [JWK] }
        struct JWK: Decodable {
            let kty: String
            let kid: String?
            let use: String?
            let crv: String?
            let n: String?, e: String?, x: String?, y: String?
        }
        let document = try JSONDecoder().decode(JWKS.self, from: Data(body))
        return document.keys.compactMap { jwk -> Key? in
            if let use = jwk.use, use != "sig" { return nil }
            func bytes(_ text: String?) -> [UInt8]? { text.flatMap { Base64URL.decode(Substring($0)) } }
            switch (jwk.kty, jwk.crv) {
            case ("RSA", _):
                guard let n = bytes(jwk.n), let e = bytes(jwk.e), let key = try? _RSA.Signing.PublicKey(n: n, e: e) else { return nil }
                return .rsa(kid: jwk.kid, key)
            case ("EC", "P-256"):
                guard let x = bytes(jwk.x), let y = bytes(jwk.y), let key = try? P256.Signing.PublicKey(rawRepresentation: x + y) else { return nil }
                return .p256(kid: jwk.kid, key)
            case ("OKP", "Ed25519"):
                guard let x = bytes(jwk.x), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: x) else { return nil }
                return .ed25519(kid: jwk.kid, key)
            default:
                return nil
            }
        }
    }

    struct Header: Decodable {
        var alg: String
        var kid: String?
        var crit: [String]?
    }
}
