import Foundation
import Testing

@testable import Clapper

@Suite struct AuthJWTTests {
    let secret = "test-secret-0123456789"
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var signer: JWTSigner { JWTSigner(secret: secret) }
    var verifier: JWTVerifier { JWTVerifier(secret: secret) }

    func failure(_ token: String, verifier: JWTVerifier? = nil) -> AuthError? {
        do {
            _ = try (verifier ?? self.verifier).verify(token, now: now)
            return nil
        } catch {
            return error
        }
    }

    @Test func goodToken() throws {
        let token = signer.token(subject: "user-1", expiresAt: now.addingTimeInterval(60))
        #expect(try verifier.verify(token, now: now) == "user-1")
    }

    @Test func expiry() {
        let token = signer.token(subject: "u", expiresAt: now)
        #expect(failure(token) == .expired)
        #expect(failure(token)?.code == "token_expired")
        let lenient = JWTVerifier(secret: secret, leeway: 30)
        #expect(failure(token, verifier: lenient) == nil)
        #expect(failure(signer.token(subject: "u", expiresAt: nil)) == .missingExpiry)
    }

    @Test func notBefore() {
        let early = signer.token(subject: "u", expiresAt: now.addingTimeInterval(600), notBefore: now.addingTimeInterval(10))
        #expect(failure(early) == .notYetValid)
        let ok = signer.token(subject: "u", expiresAt: now.addingTimeInterval(600), notBefore: now)
        #expect(failure(ok) == nil)
    }

    @Test func badSignature() {
        let token = JWTSigner(secret: "other").token(subject: "u", expiresAt: now.addingTimeInterval(60))
        #expect(failure(token) == .badSignature)
        // A tampered payload with the original signature.
        let good = signer.token(subject: "u", expiresAt: now.addingTimeInterval(60))
        let parts = good.split(separator: ".")
        let forged = Base64URL.encode(Array(#"{"exp":1900000000,"sub":"admin"}"#.utf8))
        #expect(failure("\(parts[0]).\(forged).\(parts[2])") == .badSignature)
    }

    @Test func algorithmNoneAndOthersAreRefused() {
        let payload = Base64URL.encode(Array(#"{"exp":1900000000,"sub":"u"}"#.utf8))
        let none = Base64URL.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
        #expect(failure("\(none).\(payload).") == .unsupportedAlgorithm)
        #expect(failure("\(none).\(payload)") == .malformed)
        // Signed with the right key but announcing another algorithm.
        #expect(failure(signer.token(subject: "u", expiresAt: now.addingTimeInterval(60), algorithm: "HS512")) == .unsupportedAlgorithm)
        #expect(failure(signer.token(subject: "u", expiresAt: now.addingTimeInterval(60), algorithm: "hs256")) == .unsupportedAlgorithm)
        let crit = signer.sign(header: Array(#"{"alg":"HS256","crit":["b64"]}"#.utf8), payload: Array(#"{"exp":1900000000,"sub":"u"}"#.utf8))
        #expect(failure(crit) == .unsupportedCritical)
    }

    @Test(arguments: [
        "", "abc", "a.b", "a.b.c.d", "....", "!!!.###.$$$",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0",
        "eyJhbGciOiJIUzI1NiJ9=.eyJzdWIiOiJ1In0.sig",
        "bm90IGpzb24.eyJzdWIiOiJ1In0.c2ln",
    ])
    func garbled(token: String) {
        let e = failure(token)
        #expect(e != nil)
        #expect(e?.code == "invalid_token" || e?.code == "unsupported_algorithm")
    }

    @Test func payloadProblems() {
        let exp = now.addingTimeInterval(60)
        #expect(failure(signer.token(subject: nil, expiresAt: exp)) == .missingSubject)
        #expect(failure(signer.token(subject: "", expiresAt: exp)) == .missingSubject)
        let notJSON = signer.sign(header: Array(#"{"alg":"HS256"}"#.utf8), payload: Array("nope".utf8))
        #expect(failure(notJSON) == .malformed)
        let wrongTypes = signer.sign(header: Array(#"{"alg":"HS256"}"#.utf8), payload: Array(#"{"sub":1,"exp":"soon"}"#.utf8))
        #expect(failure(wrongTypes) == .malformed)
        let fractional = signer.sign(header: Array(#"{"alg":"HS256"}"#.utf8), payload: Array(#"{"sub":"u","exp":1800000000.5}"#.utf8))
        #expect(failure(fractional) == nil)
    }

    @Test func issuerAndAudience() {
        let v = JWTVerifier(secret: secret, issuer: "https://issuer", audience: "clapper")
        let exp = now.addingTimeInterval(60)
        #expect(failure(signer.token(subject: "u", expiresAt: exp, issuer: "https://issuer", audience: "clapper"), verifier: v) == nil)
        #expect(failure(signer.token(subject: "u", expiresAt: exp, issuer: "https://evil", audience: "clapper"), verifier: v) == .wrongIssuer)
        #expect(failure(signer.token(subject: "u", expiresAt: exp, issuer: "https://issuer"), verifier: v) == .wrongAudience)
        let many = signer.sign(header: Array(#"{"alg":"HS256"}"#.utf8), payload: Array(#"{"sub":"u","exp":1800000060,"iss":"https://issuer","aud":["x","clapper"]}"#.utf8))
        #expect(failure(many, verifier: v) == nil)
    }

    @Test func emptySecretRefusesEverything() {
        let token = JWTSigner(secret: "").token(subject: "u", expiresAt: now.addingTimeInterval(60))
        #expect(failure(token, verifier: JWTVerifier(secret: "")) == .notConfigured)
    }

    @Test func messagesNeverEchoTheToken() {
        let token = signer.token(subject: "secret-user", expiresAt: now)
        let e = failure(token)
        #expect(e != nil)
        #expect(!(e?.message.contains(token) ?? true) && !(e?.description.contains("secret-user") ?? true))
        #expect(failure(String(repeating: "a", count: JWTVerifier.maxTokenLength + 1)) == .malformed)
    }
}
