import Crypto
import Fal
import Foundation
import Synchronization
import Testing

/// A settable wall clock.
final class TestNow: Sendable {
    private let value: Mutex<Date>
    init(_ date: Date = Date(timeIntervalSince1970: 1_750_000_000)) { value = Mutex(date) }
    var date: Date { value.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLock { $0 += seconds } }
    var function: @Sendable () -> Date { { self.date } }
}

/// Serves a JWKS in memory, counting fetches; its keys can be swapped.
final class JWKSTransport: HTTPTransport {
    private let state: Mutex<(keys: [Curve25519.Signing.PublicKey], status: Int, fetches: Int)>

    init(_ keys: [Curve25519.Signing.PublicKey], status: Int = 200) {
        state = Mutex((keys, status, 0))
    }

    var fetches: Int { state.withLock { $0.fetches } }
    func serve(_ keys: [Curve25519.Signing.PublicKey], status: Int = 200) { state.withLock { $0.keys = keys; $0.status = status } }

    func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        let (keys, status) = state.withLock { state in
            state.fetches += 1
            return (state.keys, state.status)
        }
        let entries = keys.map { key in
            let x = key.rawRepresentation.base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            return #"{"kty": "OKP", "crv": "Ed25519", "x": "\#(x)", "kid": "k"}"#
        }
        let body = #"{"keys": [{"kty": "RSA", "n": "abc", "e": "AQAB"}, "# + entries.joined(separator: ", ") + "]}"
        return HTTPTransportResponse(status: status, headers: ["Content-Type": "application/json"], body: Array(body.utf8))
    }
}

struct SignedWebhook {
    var headers: FalWebhookHeaders
    var body: [UInt8]

    init(key: Curve25519.Signing.PrivateKey, requestID: String = "req-1", userID: String = "user-1", timestamp: Date, body: String = #"{"payload": {"seed": 17454220438242315174}, "request_id": "req-1", "status": "OK"}"#) throws {
        let stamp = String(Int(timestamp.timeIntervalSince1970))
        self.body = Array(body.utf8)
        let message = FalWebhookVerifier.message(requestID: requestID, userID: userID, timestamp: stamp, body: self.body)
        let signature = try key.signature(for: message)
        let hex = signature.map { String(format: "%02x", $0) }.joined()
        headers = FalWebhookHeaders(requestID: requestID, userID: userID, timestamp: stamp, signature: hex)
    }
}

@Suite struct FalWebhookVerifierTests {
    let key = Curve25519.Signing.PrivateKey()
    let now = TestNow()

    func verifier(_ transport: JWKSTransport, pinned: String? = nil) -> FalWebhookVerifier {
        FalWebhookVerifier(
            configuration: FalWebhookVerifierConfiguration(jwksURL: "http://jwks.test/.well-known/jwks.json", pinnedUserID: pinned),
            transport: transport,
            now: now.function
        )
    }

    func expectCode(_ code: FalWebhookVerificationError.Code, _ body: () async throws(FalWebhookVerificationError) -> Void) async {
        do {
            try await body()
            Issue.record("expected \(code), verified")
        } catch {
            #expect(error.code == code)
        }
    }

    @Test func messageLayoutIsFalsDocumented() {
        let message = FalWebhookVerifier.message(requestID: "r", userID: "u", timestamp: "17", body: Array("{}".utf8))
        // sha256("{}") = 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
        #expect(String(decoding: message, as: UTF8.self) == "r\nu\n17\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    }

    @Test func acceptsAValidSignatureAndCachesKeys() async throws {
        let jwks = JWKSTransport([Curve25519.Signing.PrivateKey().publicKey, key.publicKey])
        let verifier = verifier(jwks)
        let signed = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: signed.headers, body: signed.body)
        try await verifier.verify(body: signed.body) { name in
            [FalWebhookHeaders.requestIDName.lowercased(): signed.headers.requestID, FalWebhookHeaders.userIDName.lowercased(): signed.headers.userID,
             FalWebhookHeaders.timestampName.lowercased(): signed.headers.timestamp, FalWebhookHeaders.signatureName.lowercased(): signed.headers.signature.map { $0.uppercased() }][name.lowercased()] ?? nil
        }
        #expect(jwks.fetches == 1)
        now.advance(23 * 3600)
        let later = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: later.headers, body: later.body)
        #expect(jwks.fetches == 1)
        now.advance(2 * 3600)
        let expired = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: expired.headers, body: expired.body)
        #expect(jwks.fetches == 2, "keys older than 24 h are refetched")
    }

    @Test func rejectsATamperedBodyOrWrongKeyAndRefetchesAtMostOncePerMinute() async throws {
        let jwks = JWKSTransport([key.publicKey])
        let verifier = verifier(jwks)
        let signed = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: signed.headers, body: signed.body)
        #expect(jwks.fetches == 1)

        var tampered = signed.body
        tampered[tampered.count - 3] = UInt8(ascii: "X")
        now.advance(61)
        await expectCode(.badSignature) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: signed.headers, body: tampered) }
        #expect(jwks.fetches == 2, "an unknown signature refetches once")
        let foreign = try SignedWebhook(key: Curve25519.Signing.PrivateKey(), timestamp: now.date)
        for _ in 0..<20 {
            await expectCode(.badSignature) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: foreign.headers, body: foreign.body) }
        }
        #expect(jwks.fetches == 2, "junk cannot drive more than one fetch a minute")
    }

    @Test func aRotatedKeyIsPickedUpByRefetch() async throws {
        let jwks = JWKSTransport([key.publicKey])
        let verifier = verifier(jwks)
        let first = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: first.headers, body: first.body)
        let rotated = Curve25519.Signing.PrivateKey()
        jwks.serve([key.publicKey, rotated.publicKey])
        now.advance(120)
        let second = try SignedWebhook(key: rotated, timestamp: now.date)
        try await verifier.verify(headers: second.headers, body: second.body)
        #expect(jwks.fetches == 2)
    }

    @Test func rejectsMissingHeadersMalformedSignaturesAndStaleTimestamps() async throws {
        let jwks = JWKSTransport([key.publicKey])
        let verifier = verifier(jwks)
        let signed = try SignedWebhook(key: key, timestamp: now.date)
        for drop in 0..<4 {
            var headers = signed.headers
            switch drop {
            case 0: headers.requestID = nil
            case 1: headers.userID = ""
            case 2: headers.timestamp = nil
            default: headers.signature = nil
            }
            let dropped = headers
            await expectCode(.missingHeader) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: dropped, body: signed.body) }
        }
        for bad in ["zz", "abc", String(repeating: "ab", count: 63), String(repeating: "g", count: 128)] {
            var headers = signed.headers
            headers.signature = bad
            let malformed = headers
            await expectCode(.malformedSignature) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: malformed, body: signed.body) }
        }
        var headers = signed.headers
        headers.timestamp = "yesterday"
        let unparsable = headers
        await expectCode(.malformedTimestamp) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: unparsable, body: signed.body) }

        let old = try SignedWebhook(key: key, timestamp: now.date.addingTimeInterval(-301))
        await expectCode(.staleTimestamp) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: old.headers, body: old.body) }
        let future = try SignedWebhook(key: key, timestamp: now.date.addingTimeInterval(301))
        await expectCode(.staleTimestamp) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: future.headers, body: future.body) }
        let edge = try SignedWebhook(key: key, timestamp: now.date.addingTimeInterval(-299))
        try await verifier.verify(headers: edge.headers, body: edge.body)
        #expect(jwks.fetches == 1, "rejections before the signature check fetch nothing")
    }

    @Test func pinsTheUserID() async throws {
        let jwks = JWKSTransport([key.publicKey])
        let verifier = verifier(jwks, pinned: "user-1")
        let mine = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: mine.headers, body: mine.body)
        let theirs = try SignedWebhook(key: key, userID: "someone-else", timestamp: now.date)
        await expectCode(.foreignUser) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: theirs.headers, body: theirs.body) }
    }

    @Test func keysUnavailableWhenTheJWKSCannotBeFetched() async throws {
        let jwks = JWKSTransport([key.publicKey], status: 503)
        let verifier = verifier(jwks)
        let signed = try SignedWebhook(key: key, timestamp: now.date)
        await expectCode(.keysUnavailable) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: signed.headers, body: signed.body) }
        await expectCode(.keysUnavailable) { () async throws(FalWebhookVerificationError) in try await verifier.verify(headers: signed.headers, body: signed.body) }
        #expect(jwks.fetches == 1, "a failing JWKS is not hammered")
        jwks.serve([key.publicKey])
        now.advance(61)
        let later = try SignedWebhook(key: key, timestamp: now.date)
        try await verifier.verify(headers: later.headers, body: later.body)
        #expect(jwks.fetches == 2)
    }

    @Test func concurrentVerificationsShareOneFetch() async throws {
        let jwks = JWKSTransport([key.publicKey])
        let verifier = verifier(jwks)
        let signed = try SignedWebhook(key: key, timestamp: now.date)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask { try await verifier.verify(headers: signed.headers, body: signed.body) }
            }
            try await group.waitForAll()
        }
        #expect(jwks.fetches == 1)
    }
}
