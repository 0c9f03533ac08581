import Clapper
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// What Clapper keeps around jwt-kit's key collection: the JWKS cache, one refetch on an unknown
/// `kid` at most once a minute, `alg` matched to the key's type, `crit` refused.
/// A JWKS document the test can replace while the server runs.
final class JWKSDocument: Sendable {
    private let text: Mutex<String>
    init(_ text: String) { self.text = Mutex(text) }
    var current: String { text.withLock { $0 } }
    func replace(with new: String) { text.withLock { $0 = new } }
}

@Suite("JWKS cache and key rotation")
struct AuthJWKSRotationTests {
    /// Serves whatever `jwks` holds at the time of each request.
    func withSwitchableJWKSServer<T: Sendable>(_ jwks: JWKSDocument, _ body: @Sendable (URL) async throws -> T) async throws -> T where T: Sendable {
        let router = Router()
        router.get("/jwks.json") { _, _ in jwks.current }
        let (ready, port) = AsyncStream.makeStream(of: Int.self)
        let quiet = Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() })
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: { port.yield($0.localAddress?.port ?? 0) }, logger: quiet)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: quiet))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var ports = ready.makeAsyncIterator()
            let bound = await ports.next() ?? 0
            defer { Task { await group.triggerGracefulShutdown() } }
            return try await body(try #require(URL(string: "http://127.0.0.1:\(bound)/jwks.json")))
        }
    }

    func failure(_ verifier: JWKSTokenVerifier, _ token: String, now: Date) async -> AuthError? {
        do {
            _ = try await verifier.verify(token, now: now)
            return nil
        } catch {
            return error
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func anUnknownKidRefetchesAtMostOncePerMinute() async throws {
        let first = try TestIdentityProvider()
        let rotated = try TestIdentityProvider()
        let jwks = JWKSDocument(try first.jwks())
        try await withSwitchableJWKSServer(jwks) { url in
            let verifier = JWKSTokenVerifier(url: url, audience: "clapper", logger: Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() }))
            let start = Date()
            let token1 = try first.token(alg: "ES256", kid: "ec-1", audience: "clapper")
            #expect(try await verifier.verify(token1, now: start) == "carol")
            #expect(await verifier.fetchCount == 1)

            // The provider rotates to new keys under new ids.
            let rotatedJWKS = try rotated.jwks().replacingOccurrences(of: "-1\"", with: "-2\"")
            jwks.replace(with: rotatedJWKS)
            let newToken = try rotated.token(alg: "RS256", kid: "rsa-2", audience: "clapper")
            // Within a minute of the last fetch: no new fetch, the key is unknown.
            #expect(await failure(verifier, newToken, now: start.addingTimeInterval(30)) == .unknownKey)
            #expect(await verifier.fetchCount == 1)
            // After it: one refetch, and the rotated key verifies.
            #expect(try await verifier.verify(newToken, now: start.addingTimeInterval(61)) == "carol")
            #expect(await verifier.fetchCount == 2)
            // A forgery under a known kid drives no fetch.
            let forged = try first.token(alg: "RS256", kid: "rsa-2", audience: "clapper")
            #expect(await failure(verifier, forged, now: start.addingTimeInterval(200)) == .unknownKey)
            #expect(await verifier.fetchCount == 2)
            // No kid: every key of the token's type is tried.
            let token2 = try rotated.token(alg: "EdDSA", kid: nil, audience: "clapper")
            #expect(try await verifier.verify(token2, now: start.addingTimeInterval(201)) == "carol")
            // The old keys are gone.
            let token3 = try first.token(alg: "ES256", kid: "ec-1", audience: "clapper")
            #expect(await failure(verifier, token3, now: start.addingTimeInterval(202)) == .unknownKey)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func algorithmsAndHeadersAreCheckedBeforeAnyKey() async throws {
        let idp = try TestIdentityProvider()
        try await withSwitchableJWKSServer(JWKSDocument(try idp.jwks())) { url in
            let verifier = JWKSTokenVerifier(url: url, audience: "clapper", logger: Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() }))
            let now = Date()
            let good = try idp.token(alg: "EdDSA", kid: "ed-1", audience: "clapper")
            #expect(try await verifier.verify(good, now: now) == "carol")
            // The right signature, announced as another algorithm or with a key of another type.
            let parts = good.split(separator: ".")
            func header(_ json: String) -> String { idp.b64(Data(json.utf8)) }
            #expect(await failure(verifier, "\(header(#"{"alg":"none"}"#)).\(parts[1]).", now: now) == .unsupportedKeyAlgorithm)
            #expect(await failure(verifier, "\(header(#"{"alg":"HS256"}"#)).\(parts[1]).\(parts[2])", now: now) == .unsupportedKeyAlgorithm)
            #expect(await failure(verifier, "\(header(#"{"alg":"EdDSA","kid":"ed-1","crit":["exp"]}"#)).\(parts[1]).\(parts[2])", now: now) == .unsupportedCritical)
            let rsaAsEdDSA = try idp.token(alg: "RS256", kid: "ed-1", audience: "clapper")
            #expect(await failure(verifier, rsaAsEdDSA, now: now) == .unknownKey)
            // Claims are judged after the signature, as for HS256.
            let token4 = try idp.token(alg: "ES256", kid: "ec-1", audience: "other")
            #expect(await failure(verifier, token4, now: now) == .wrongAudience)
            let token5 = try idp.token(alg: "ES256", kid: "ec-1", expiresIn: -60, audience: "clapper")
            #expect(await failure(verifier, token5, now: now) == .expired)
            #expect(await verifier.fetchCount == 1)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func keysForEncryptionOrOtherAlgorithmsAreSkippedAndAnEmptySetIsUnavailable() async throws {
        let idp = try TestIdentityProvider()
        let document = try #require(try JSONSerialization.jsonObject(with: Data(idp.jwks().utf8)) as? [String: [[String: String]]])
        var keys = try #require(document["keys"])
        keys[0]["use"] = "enc"  // rsa-1
        keys[1]["alg"] = "ES384"  // ec-1
        let jwks = String(decoding: try JSONSerialization.data(withJSONObject: ["keys": keys + [["kty": "oct", "k": "c2VjcmV0"]]]), as: UTF8.self)
        try await withSwitchableJWKSServer(JWKSDocument(jwks)) { url in
            let verifier = JWKSTokenVerifier(url: url, audience: "clapper", logger: Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() }))
            let now = Date()
            let token6 = try idp.token(alg: "RS256", kid: "rsa-1", audience: "clapper")
            #expect(await failure(verifier, token6, now: now) == .unknownKey)
            let token7 = try idp.token(alg: "ES256", kid: "ec-1", audience: "clapper")
            #expect(await failure(verifier, token7, now: now) == .unknownKey)
            let token8 = try idp.token(alg: "EdDSA", kid: "ed-1", audience: "clapper")
            #expect(try await verifier.verify(token8, now: now) == "carol")
        }
        try await withSwitchableJWKSServer(JWKSDocument(#"{"keys":[]}"#)) { url in
            let verifier = JWKSTokenVerifier(url: url, audience: "clapper", logger: Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() }))
            let token9 = try idp.token(alg: "EdDSA", kid: "ed-1", audience: "clapper")
            #expect(await failure(verifier, token9, now: Date()) == .keysUnavailable)
        }
    }
}
