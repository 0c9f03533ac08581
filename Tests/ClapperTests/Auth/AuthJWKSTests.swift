import _CryptoExtras
import Clapper
import Crypto
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Testing
import TestSupport

/// An identity provider's keys and a JWKS endpoint on a free loopback port.
struct TestIdentityProvider: Sendable {
    let rsa: _RSA.Signing.PrivateKey
    let p256 = P256.Signing.PrivateKey()
    let ed25519 = Curve25519.Signing.PrivateKey()

    init() throws {
        rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    }

    func jwks() throws -> String {
        let primitives = try rsa.publicKey.getKeyPrimitives()
        let ec = p256.publicKey.rawRepresentation
        let keys: [[String: String]] = [
            ["kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64(primitives.modulus), "e": b64(primitives.publicExponent)],
            ["kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(ec.prefix(32)), "y": b64(ec.suffix(32))],
            ["kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(ed25519.publicKey.rawRepresentation)],
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: ["keys": keys]), as: UTF8.self)
    }

    func token(alg: String, kid: String?, sub: String = "carol", expiresIn: TimeInterval = 3600, audience: String? = nil) throws -> String {
        var header: [String: String] = ["alg": alg, "typ": "JWT"]
        if let kid { header["kid"] = kid }
        var claims: [String: Any] = ["sub": sub, "exp": Int(Date().timeIntervalSince1970 + expiresIn)]
        if let audience { claims["aud"] = audience }
        let input = b64(try JSONSerialization.data(withJSONObject: header)) + "." + b64(try JSONSerialization.data(withJSONObject: claims))
        let bytes = Data(input.utf8)
        let signature: Data
        switch alg {
        case "RS256": signature = try rsa.signature(for: SHA256.hash(data: bytes), padding: .insecurePKCS1v1_5).rawRepresentation
        case "ES256": signature = try p256.signature(for: bytes).rawRepresentation
        default: signature = try ed25519.signature(for: bytes)
        }
        return input + "." + b64(signature)
    }

    func b64(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// Serves `jwks` at `/jwks.json` on a free port for the duration of `body`.
func withJWKSServer<T: Sendable>(_ jwks: String, _ body: @Sendable (String) async throws -> T) async throws -> T {
    let router = Router()
    router.get("/jwks.json") { _, _ in jwks }
    let (ready, port) = AsyncStream.makeStream(of: Int.self)
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { port.yield($0.localAddress?.port ?? 0) },
        logger: Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() })
    )
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: Logger(label: "jwks", factory: { _ in SwiftLogNoOpLogHandler() })))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var ports = ready.makeAsyncIterator()
        let bound = await ports.next() ?? 0
        defer { Task { await group.triggerGracefulShutdown() } }
        return try await body("http://127.0.0.1:\(bound)/jwks.json")
    }
}

@Suite("User tokens from an identity provider's JWKS")
struct AuthJWKSTests {
    @Test(.timeLimit(.minutes(1)))
    func rs256ES256AndEdDSATokensOpenTheCallersJobsAndForgeriesDoNot() async throws {
        let idp = try TestIdentityProvider()
        let forger = try TestIdentityProvider()
        try await withJWKSServer(try idp.jwks()) { jwksURL in
            try await withGateway(GatewayOptions(configure: {
                $0.authJWKSURL = jwksURL
                $0.authAudience = "clapper"
            })) { stack in
                let gateway = stack.gateway
                for (alg, kid) in [("RS256", "rsa-1"), ("ES256", "ec-1"), ("EdDSA", "ed-1"), ("ES256", nil)] {
                    let token = try idp.token(alg: alg, kid: kid, audience: "clapper")
                    let listed = try await gateway.send(.GET, "/v1/jobs", token: token)
                    #expect(listed.status == 200, "\(alg) \(kid ?? "no kid")")
                }
                let created = try await gateway.send(.POST, "/v1/jobs", token: try idp.token(alg: "RS256", kid: "rsa-1", audience: "clapper"), body: jobBody("idp \(UUID())", audio: false))
                #expect(created.status == 202)
                let id = try #require(created.json["jobId"] as? String)
                // The same user through another algorithm sees it; another user does not.
                #expect(try await gateway.send(.GET, "/v1/jobs/\(id)", token: try idp.token(alg: "EdDSA", kid: "ed-1", audience: "clapper")).status == 200)
                #expect(try await gateway.send(.GET, "/v1/jobs/\(id)", token: try idp.token(alg: "EdDSA", kid: "ed-1", sub: "dave", audience: "clapper")).status == 404)

                let refused: [(String, String)] = [
                    ("forged RS256", try forger.token(alg: "RS256", kid: "rsa-1", audience: "clapper")),
                    ("forged ES256", try forger.token(alg: "ES256", kid: "ec-1", audience: "clapper")),
                    ("wrong audience", try idp.token(alg: "RS256", kid: "rsa-1", audience: "someone-else")),
                    ("no audience", try idp.token(alg: "RS256", kid: "rsa-1")),
                    ("expired", try idp.token(alg: "ES256", kid: "ec-1", expiresIn: -3600, audience: "clapper")),
                    ("HS256 with another secret", JWTSigner(secret: "whatever-secret-123").token(subject: "carol", expiresAt: Date().addingTimeInterval(60))),
                ]
                for (name, token) in refused {
                    let reply = try await gateway.send(.GET, "/v1/jobs", token: token)
                    #expect(reply.status == 401, "\(name)")
                }
            }
        }
    }

    @Test func aJWKSURLStandsInForTheSharedSecret() throws {
        let configuration = try ClapperConfiguration(environment: [
            "CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123",
            "CLAPPER_AUTH_JWKS_URL": "https://idp.example/.well-known/jwks.json",
            "CLAPPER_AUTH_AUDIENCE": "clapper",
        ])
        #expect(configuration.authJWKSURL == "https://idp.example/.well-known/jwks.json")
        #expect(configuration.jwtSecret == nil)
        #expect(throws: ClapperConfiguration.Error.self) {
            try ClapperConfiguration(environment: ["CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123", "CLAPPER_AUTH_JWKS_URL": "not a url", "CLAPPER_AUTH_AUDIENCE": "clapper"])
        }
        let noAudience = #expect(throws: ClapperConfiguration.Error.self) {
            try ClapperConfiguration(environment: ["CLAPPER_WEBHOOK_SECRET": "0123456789abcdef0123", "CLAPPER_AUTH_JWKS_URL": "https://idp.example/jwks.json"])
        }
        #expect(noAudience?.key == "CLAPPER_AUTH_AUDIENCE")
    }
}
