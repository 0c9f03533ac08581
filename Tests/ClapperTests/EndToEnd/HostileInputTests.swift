import AsyncHTTPClient
@testable import Clapper
import Crypto
import Fal
import FalSim
import Foundation
import NIOCore
import Redis
import Testing
import TestSupport

/// Hostile input over real sockets to a running gateway: numbers that trapped before (a webhook
/// timestamp of `1e300`, fal's `Retry-After: 1e300`) and their neighbours each get a 4xx (or are
/// clamped) and the process keeps answering; text limits count code points and bytes, as
/// `openapi.yaml` says, not grapheme clusters.
@Suite("Hostile input: no trap, limits as documented")
struct HostileInputTests {
    let alice = TestUsers.token("alice")

    // MARK: Part 1: numbers

    /// Sends a webhook signed over `timestamp` exactly as given, so only the timestamp can be wrong.
    func sendWebhook(_ body: [UInt8], requestID: String, to url: String, key: Curve25519.Signing.PrivateKey, timestamp: String) async throws -> (status: Int, body: String) {
        let message = FalWebhookVerifier.message(requestID: requestID, userID: "sim-user", timestamp: timestamp, body: body)
        let signature = try key.signature(for: message).map { String(format: "%02x", $0) }.joined()
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "X-Fal-Webhook-Request-Id", value: requestID)
        request.headers.add(name: "X-Fal-Webhook-User-Id", value: "sim-user")
        request.headers.add(name: "X-Fal-Webhook-Timestamp", value: timestamp)
        request.headers.add(name: "X-Fal-Webhook-Signature", value: signature)
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    /// A webhook with a valid URL token and a genuine signature over a hostile timestamp: 401
    /// each time, the job unchanged, and the genuine webhook still lands afterwards.
    @Test(.timeLimit(.minutes(1)))
    func hostileWebhookTimestampsAre401AndTheGatewayLives() async throws {
        let setup = SimSetup()
        try await withGateway(.sim(setup)) { stack in
            let gateway = stack.gateway, sim = stack.sim
            let held = try await WebhookTests().heldVideoJob(gateway, sim)
            let before = try await gateway.job(held.jobID, token: alice)
            let now = Int(Date().timeIntervalSince1970)
            let hostile = [
                "1e300", "-1e300", "nan", "inf", "-inf", "99999999999999999999", "18446744073709551616", "",
                "１７５００００００００", "\(now).0", "+\(now)", "-\(now)", "\(now / 10) \(now % 10)", "0x\(String(now, radix: 16))",
                "\(now)e0", "\(now)000",
            ]
            for timestamp in hostile {
                let reply = try await sendWebhook(held.body, requestID: held.requestID, to: held.url, key: setup.signingKey, timestamp: timestamp)
                #expect(reply.status == 401, "\(timestamp): \(reply.body)")
                #expect(reply.body.contains("invalid_signature"), "\(timestamp): \(reply.body)")
            }
            #expect(try await gateway.send(.GET, "/healthz").status == 200)
            let after = try await gateway.job(held.jobID, token: alice)
            #expect(after["version"] as? Int == before["version"] as? Int)
            let genuine = try await sendWebhook(held.body, requestID: held.requestID, to: held.url, key: setup.signingKey, timestamp: String(now))
            #expect(genuine.status == 200, "\(genuine.body)")
        }
    }

    /// fal answers the submit 429 with `Retry-After: 1e300`: no trap, no client retry (the wait
    /// is past the budget), the task is handled as rate limited (not as an unknown outcome): the
    /// reconciler sends it again and the job completes.
    @Test(.timeLimit(.minutes(1)))
    func aRetryAfterOf1e300IsRateLimitedAndSentAgainLater() async throws {
        try await withGateway(GatewayOptions(configure: {
            $0.reconcileInterval = .milliseconds(50)
            $0.reconcilePolicy = ReconcilePolicy(submitGraceSeconds: 1)
        })) { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let marker = "retry-after-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(promptContains: marker, faults: ["submit-429", "retry-after=1e300"], times: 1))
            let created = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody(marker, audio: false))
            #expect(created.status == 202)
            let id = try #require(created.json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: alice, until: isFinished)
            #expect(done["status"] as? String == "completed")
            let attempts = await sim.requests().filter { $0.input.contains(marker) }
            #expect(attempts.map(\.submitStatus) == [429, 200], "one 429 (no retry inside the client), then the reconciler's send")
            #expect(try await gateway.send(.GET, "/healthz").status == 200)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func hostileQueryNumbersAre400() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            for limit in ["1e3", "１２", "99999999999999999999", "nan", "inf", "-1", "0", "101", "", "1.0", "0x10"] {
                let reply = try await gateway.send(.GET, "/v1/jobs?limit=\(Self.query(limit))", token: alice)
                #expect(reply.status == 400 && reply.errorCode == "invalid_limit", "limit=\(limit): \(reply.status)")
            }
            for cursor in ["1e300:x", "99999999999999999999:x", "nan:x", "x", "１:x", "1:" + String(repeating: "x", count: 300)] {
                let reply = try await gateway.send(.GET, "/v1/jobs?cursor=\(Self.query(cursor))", token: alice)
                #expect(reply.status == 400 && reply.errorCode == "invalid_cursor", "cursor=\(cursor): \(reply.status)")
            }
            #expect(try await gateway.send(.GET, "/v1/jobs?limit=100&cursor=1:x", token: alice).status == 200)

            let admin = ReconcileSetup.adminToken
            for olderThan in ["inf", "nan", "1e300", "-1e300", "-1", "0x10", "１２", "", "99999999999999999999"] {
                let reply = try await gateway.send(.GET, "/v1/admin/jobs?olderThan=\(Self.query(olderThan))", token: admin)
                #expect(reply.status == 400 && reply.errorCode == "invalid_older_than", "olderThan=\(olderThan): \(reply.status)")
            }
            for olderThan in ["0", "1e3", "3600.5"] {
                #expect(try await gateway.send(.GET, "/v1/admin/jobs?olderThan=\(olderThan)", token: admin).status == 200, "\(olderThan)")
            }
            for limit in ["1e3", "99999999999999999999", "nan"] {
                #expect(try await gateway.send(.GET, "/v1/admin/jobs?limit=\(limit)", token: admin).status == 400, "\(limit)")
            }
            let reconcile = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"olderThanSeconds": 1e300}"#.utf8))
            #expect(reconcile.status == 400)
            let maxed = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"olderThanSeconds": 9223372036854775807, "dryRun": true}"#.utf8))
            #expect(maxed.status == 200)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func hostileNumbersInAJobBodyAreRefused() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            let cases: [(String, Int)] = [
                (#"{"prompt":"p","durationSeconds":1e300}"#, 400), (#"{"prompt":"p","durationSeconds":-1e300}"#, 400),
                (#"{"prompt":"p","durationSeconds":99999999999999999999}"#, 422), (#"{"prompt":"p","durationSeconds":1e400}"#, 400),
                (#"{"prompt":"p","durationSeconds":"5"}"#, 400), (#"{"prompt":"p","video":{"seed":1e300}}"#, 400),
                (#"{"prompt":"p","video":{"seed":-99999999999999999999}}"#, 422), (#"{"prompt":"p","video":{"seed":\#(String(repeating: "9", count: 400))}}"#, 422),
            ]
            for (body, status) in cases {
                let reply = try await gateway.send(.POST, "/v1/jobs", token: alice, body: Array(body.utf8))
                #expect(reply.status == status, "\(body.prefix(80)): \(reply.status) \(reply.text)")
            }
            #expect(try await gateway.send(.GET, "/healthz").status == 200)
        }
    }

    /// JWT claims are JSON numbers: huge, negative or unrepresentable ones are judged, never trapped on.
    @Test(.timeLimit(.minutes(1)))
    func hostileJWTClaimNumbers() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            let far = #"{"sub":"jwt-user","exp":1e300}"#
            #expect(try await gateway.send(.GET, "/v1/jobs", token: Self.jwt(far)).status == 200, "exp 1e300 is a valid (far) expiry")
            for claims in [
                #"{"sub":"jwt-user","exp":1e400}"#, #"{"sub":"jwt-user","exp":\#(String(repeating: "9", count: 400))}"#,
                #"{"sub":"jwt-user","exp":-1e300}"#, #"{"sub":"jwt-user","exp":"1e300"}"#, #"{"sub":"jwt-user","exp":null}"#,
                #"{"sub":"jwt-user","exp":1e300,"nbf":1e300}"#, #"{"sub":"jwt-user","exp":1e300,"nbf":1e400}"#,
            ] {
                let reply = try await gateway.send(.GET, "/v1/jobs", token: Self.jwt(claims))
                #expect(reply.status == 401, "\(claims.prefix(80)): \(reply.status)")
            }
            #expect(try await gateway.send(.GET, "/healthz").status == 200)
        }
    }

    /// Redis is outside too: a sorted-set score no Clapper wrote (`inf`, `1e300`) is skipped.
    @Test(.timeLimit(.minutes(1)))
    func hostileRedisScoresAreSkipped() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway, redis = stack.server
            let client = RedisClient(configuration: RedisConfiguration(url: redis.url))
            defer { Task { await client.shutdown() } }
            let user = "scores-\(UUID())"
            let token = TestUsers.token(user)
            let created = try await gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("real one", audio: false))
            let id = try #require(created.json["jobId"] as? String)
            let keys = JobKeys()
            _ = try await client.send("ZADD", keys.userJobs(user), "+inf", "ghost-inf", "-inf", "ghost-minus-inf", "1e300", "ghost-huge")
            _ = try await client.send("ZADD", keys.due(shard: 0), "+inf", "ghost|video", "1e300", "ghost2|video")
            let page = try await gateway.send(.GET, "/v1/jobs?limit=10", token: token)
            #expect(page.status == 200)
            #expect(((page.json["jobs"] as? [[String: Any]]) ?? []).compactMap { $0["jobId"] as? String } == [id])
            #expect(try await gateway.send(.GET, "/v1/admin/jobs", token: ReconcileSetup.adminToken).status == 200)
        }
    }

    // MARK: Part 2: text limits

    @Test(.timeLimit(.minutes(1)))
    func textLimitsCountCodePointsAndBytes() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            func create(prompt: String, negative: String? = nil, key: String? = nil) async throws -> Gateway.Reply {
                var object: [String: Any] = ["prompt": prompt, "durationSeconds": 2]
                if let negative { object["video"] = ["negativePrompt": negative] }
                let body = Array(try JSONSerialization.data(withJSONObject: object))
                return try await gateway.send(.POST, "/v1/jobs", token: alice, headers: key.map { ["Idempotency-Key": $0] } ?? [:], body: body)
            }
            let combining = "\u{301}"
            // One letter and 300,000 combining marks: one grapheme cluster, 600 KB. Refused.
            let zalgo = try await create(prompt: "a" + String(repeating: combining, count: 300_000))
            #expect(zalgo.status == 422)
            #expect(zalgo.errorCode == "validation_failed")
            #expect(zalgo.text.contains("prompt must be at most 2000 characters (Unicode code points) and 8000 bytes of UTF-8"), "\(zalgo.text)")
            #expect(zalgo.body.count < 1000, "the prompt is not echoed")
            // Exactly the limit in code points, as one grapheme cluster: accepted; one more: refused.
            #expect(try await create(prompt: "a" + String(repeating: combining, count: 1999)).status == 202)
            #expect(try await create(prompt: "a" + String(repeating: combining, count: 2000)).status == 422)
            // Four-byte code points: 2000 of them (8000 bytes, the byte cap) fit; 2001 do not.
            #expect(try await create(prompt: String(repeating: "😀", count: 2000)).status == 202)
            #expect(try await create(prompt: String(repeating: "😀", count: 2001)).status == 422)
            // The same for negativePrompt.
            #expect(try await create(prompt: "p", negative: "n" + String(repeating: combining, count: 1999)).status == 202)
            let negative = try await create(prompt: "p", negative: "n" + String(repeating: combining, count: 100_000))
            #expect(negative.status == 422)
            #expect(negative.text.contains("video.negativePrompt must be at most 2000"), "\(negative.text)")
            // Idempotency-Key: 255 code points (two bytes each here) fit; 256 do not.
            #expect(try await create(prompt: "p", key: String(repeating: "é", count: 255)).status == 202)
            for key in [String(repeating: "é", count: 256), String(repeating: "k", count: 256), "k" + String(repeating: combining, count: 255)] {
                let reply = try await create(prompt: "p", key: key)
                #expect(reply.status == 400 && reply.errorCode == "invalid_idempotency_key", "\(key.utf8.count) bytes: \(reply.status)")
            }
            // An unknown key is echoed cut to 100 code points, whatever its grapheme count.
            let unknown = try await gateway.send(.POST, "/v1/jobs", token: alice, body: Array(#"{"prompt":"p","x\#(String(repeating: combining, count: 50_000))":1}"#.utf8))
            #expect(unknown.status == 422 && unknown.errorCode == "unknown_field")
            #expect(unknown.body.count < 1000, "\(unknown.body.count) bytes")
            // metadata: 4096 bytes of JSON text as sent, multi-byte characters counted as bytes.
            let fits = #"{"k":"\#(String(repeating: "é", count: 2044))"}"#
            #expect(fits.utf8.count == 4096)
            let withMetadata = { (metadata: String) in Array(#"{"prompt":"p","durationSeconds":2,"metadata":\#(metadata)}"#.utf8) }
            #expect(try await gateway.send(.POST, "/v1/jobs", token: alice, body: withMetadata(fits)).status == 202)
            let over = try await gateway.send(.POST, "/v1/jobs", token: alice, body: withMetadata(#"{"k":"\#(String(repeating: "é", count: 2044))x"}"#))
            #expect(over.status == 422 && over.errorCode == "validation_failed")
        }
    }

    @Test func textLimitCountsScalarsNotCharacters() {
        let limit = TextLimit(maxCodePoints: 3)
        #expect(limit.maxBytes == 12)
        #expect(limit.allows("abc") && limit.allows("a\u{301}b") && limit.allows("😀😀😀"))
        #expect(!limit.allows("a\u{301}\u{301}\u{301}"), "one Character, four code points")
        #expect(!limit.allows("abcd"))
        #expect(!TextLimit(maxCodePoints: 3, maxBytes: 4).allows("éé\u{301}"), "three code points, five bytes")
        #expect(TextLimit.shown("a" + String(repeating: "\u{301}", count: 1000), codePoints: 5).unicodeScalars.count == 6)
        #expect(TextLimit.shown("short", codePoints: 5) == "short")
    }

    // MARK: Helpers

    /// Percent-encodes all but ASCII letters and digits (fullwidth digits included).
    static func query(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")) ?? text
    }

    /// An HS256 token over `claims` exactly as written (numbers a JSON encoder would not make).
    static func jwt(_ claims: String, secret: String = "test-jwt-secret-0123456789abcdef") -> String {
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode(Array(claims.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(header).\(payload)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return "\(header).\(payload).\(Base64URL.encode(Array(mac)))"
    }
}
