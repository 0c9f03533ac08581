import Fal
import Foundation
import JWTKit
import Logging

/// Verifies users' bearer JWTs signed by an identity provider whose public keys are published
/// as a JWKS (`CLAPPER_AUTH_JWKS_URL`): RS256, ES256 and EdDSA. jwt-kit reads the keys and checks
/// the signatures; this type owns what jwt-kit leaves to its caller: fetching the JWKS, caching
/// it for an hour, refetching once on an unknown `kid` (key rotation) at most once a minute so
/// junk tokens cannot drive outbound fetches, matching `alg` to the key's type, refusing `crit`,
/// and the claim checks shared with HS256 (`ClaimRules`).
public actor JWKSTokenVerifier {
    private let url: URL
    private let transport: any HTTPTransport
    private nonisolated let rules: ClaimRules
    private let logger: Logger
    private let cacheLifetime: TimeInterval
    private let minimumRefetch: TimeInterval
    private var keys: [Key] = []
    private var fetchedAt: Date?
    private var lastAttempt: Date?
    /// Fetches performed (for tests and metrics).
    public private(set) var fetchCount = 0

    /// One key of the JWKS, in a jwt-kit key collection of its own, so that which keys a token
    /// is tried against is decided here (its `kid`, or every key of its type when it has none),
    /// never by jwt-kit's fallback to a default key.
    struct Key: Sendable {
        let kid: String?
        /// The one token `alg` this key verifies: RS256 (RSA), ES256 (P-256), EdDSA (Ed25519).
        let alg: String
        let collection: JWTKeyCollection
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
        self.rules = ClaimRules(leeway: leeway, issuer: issuer, audience: audience)
        self.cacheLifetime = cacheLifetime
        self.minimumRefetch = minimumRefetch
        self.logger = logger
    }

    /// The user id (`sub`) of a valid token at `now`. The signature is checked outside the actor
    /// (many tokens at once); only the key cache is isolated.
    public nonisolated func verify(_ token: String, now: Date) async throws(AuthError) -> String {
        let parts = try JWTParts(token, algorithms: ["RS256", "ES256", "EdDSA"], otherwise: .unsupportedKeyAlgorithm)
        let keys = await currentKeys(now: now)
        var claims = try await Self.claims(of: token, parts, keys: keys)
        if claims == nil {
            // A key id we do not know may be a rotation: fetch again (at most once a minute). A
            // bad signature under a known key is just bad, and drives no fetch.
            let known = parts.kid.map { kid in keys.contains { $0.kid == kid } } ?? !keys.isEmpty
            if !known, await refresh(now: now) {
                claims = try await Self.claims(of: token, parts, keys: await currentKeys(now: now))
            }
        }
        guard let claims else { throw keys.isEmpty ? .keysUnavailable : .unknownKey }
        return try rules.subject(of: claims, now: now)
    }

    /// The token's claims when one of `keys` (its `kid`'s, or all of its type without a `kid`)
    /// verifies its signature; nil when none does. A payload that is not the claims' JSON under
    /// a good signature is malformed.
    private static func claims(of token: String, _ parts: JWTParts, keys: [Key]) async throws(AuthError) -> JWTClaims? {
        for key in keys where key.alg == parts.alg {
            if let kid = parts.kid, let keyID = key.kid, kid != keyID { continue }
            do {
                return try await key.collection.verify(token, as: JWTClaims.self)
            } catch let error as JWTError where error.errorType == .malformedToken {
                throw .malformed
            } catch {
                continue  // not this key's signature
            }
        }
        return nil
    }

    /// The cached keys, fetched first when the cache is empty or older than its lifetime.
    private func currentKeys(now: Date) async -> [Key] {
        if fetchedAt.map({ now.timeIntervalSince($0) > cacheLifetime }) ?? true {
            await refresh(now: now)
        }
        return keys
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
            let parsed = try await Self.keys(fromJWKS: response.body)
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

    /// The RSA, P-256 and Ed25519 signing keys of a JWKS document, read by jwt-kit; keys of
    /// other types or curves, for encryption (`use` other than `sig`), declared for another
    /// algorithm (`alg`), or that jwt-kit cannot read are skipped. Private parts are dropped.
    static func keys(fromJWKS body: [UInt8]) async throws -> [Key] {
        struct JWKS: Decodable { let keys: [Entry] }
        struct Entry: Decodable {
            let jwk: JWK?
            let use: String?
            private enum CodingKeys: String, CodingKey { case use }
            init(from decoder: any Decoder) throws {
                jwk = try? JWK(from: decoder)
                use = try? decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .use)
            }
        }
        var keys: [Key] = []
        for (index, entry) in try JSONDecoder().decode(JWKS.self, from: Data(body)).keys.enumerated() {
            guard var jwk = entry.jwk, entry.use == nil || entry.use == "sig" else { continue }
            let algorithm: JWK.Algorithm
            switch (jwk.keyType, jwk.curve?.rawValue) {
            case (.rsa, _): algorithm = .rs256
            case (.ecdsa, "P-256"): algorithm = .es256
            case (.octetKeyPair, "Ed25519"): algorithm = .eddsa
            default: continue
            }
            guard jwk.algorithm == nil || jwk.algorithm == algorithm else { continue }
            jwk.algorithm = algorithm
            (jwk.privateExponent, jwk.prime1, jwk.prime2) = (nil, nil, nil)
            let kid = jwk.keyIdentifier?.string
            // jwt-kit files keys by kid; a key without one gets a private name here, and is
            // tried for every token of its type, as the JWKS specification allows.
            jwk.keyIdentifier = JWKIdentifier(string: kid ?? "clapper-unnamed-\(index)")
            let collection = JWTKeyCollection()
            guard (try? await collection.add(jwk: jwk)) != nil else { continue }
            keys.append(Key(kid: kid, alg: algorithm.rawValue, collection: collection))
        }
        return keys
    }
}
