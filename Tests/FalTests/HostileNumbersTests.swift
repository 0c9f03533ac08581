import Crypto
@testable import Fal
import FalSim
import Foundation
import Testing

/// Numbers from outside (fal's webhook headers, its answers' headers and bodies, fal-sim's
/// inputs) never trap: each hostile value is refused or clamped. The first two cases crashed the
/// process before: `X-Fal-Webhook-Timestamp: 1e300` (`Int(skew)`) and `Retry-After: 1e300`
/// (`Int64(seconds * 1000)`).
@Suite struct HostileNumbersTests {
    /// Timestamps that are not plain ASCII digits of Unix seconds (or have too many digits).
    static let badTimestamps = [
        "1e300", "-1e300", "nan", "NaN", "inf", "-inf", "infinity", "99999999999999999999", "18446744073709551616",
        "1750000000.5", "+1750000000", "-1750000000", "0x68307e80", "１７５００００００００", "1750000000 ", " 1750000000",
        "1750 000000", "1750000000\t", "1_750_000_000", "1750000000000",
    ]

    // MARK: Webhook timestamp

    /// Signed over the hostile timestamp exactly as sent, so only the timestamp can be at fault.
    func headers(key: Curve25519.Signing.PrivateKey, timestamp: String, body: [UInt8]) throws -> FalWebhookHeaders {
        let message = FalWebhookVerifier.message(requestID: "req-1", userID: "user-1", timestamp: timestamp, body: body)
        let signature = try key.signature(for: message).map { String(format: "%02x", $0) }.joined()
        return FalWebhookHeaders(requestID: "req-1", userID: "user-1", timestamp: timestamp, signature: signature)
    }

    @Test(arguments: badTimestamps)
    func aTimestampThatIsNotDigitsIsMalformedNotACrash(timestamp: String) async throws {
        let key = Curve25519.Signing.PrivateKey()
        let now = TestNow()
        let verifier = FalWebhookVerifier(
            configuration: FalWebhookVerifierConfiguration(jwksURL: "http://jwks.test/jwks.json"),
            transport: JWKSTransport([key.publicKey]), now: now.function
        )
        let body = Array(#"{"status": "OK"}"#.utf8)
        do {
            try await verifier.verify(headers: try headers(key: key, timestamp: timestamp, body: body), body: body)
            Issue.record("\(timestamp) verified")
        } catch let error as FalWebhookVerificationError {
            #expect(error.code == .malformedTimestamp, "\(timestamp): \(error)")
        }
        // The same verifier still takes a good one.
        let good = String(Int(now.date.timeIntervalSince1970))
        try await verifier.verify(headers: try headers(key: key, timestamp: good, body: body), body: body)
    }

    @Test func twelveDigitsAreParsedAndFarOnesAreStaleWithAWholeSkew() async throws {
        let key = Curve25519.Signing.PrivateKey()
        let now = TestNow()
        let verifier = FalWebhookVerifier(
            configuration: FalWebhookVerifierConfiguration(jwksURL: "http://jwks.test/jwks.json"),
            transport: JWKSTransport([key.publicKey]), now: now.function
        )
        let body = Array("{}".utf8)
        for timestamp in ["999999999999", "0", "000000000001"] {
            do {
                try await verifier.verify(headers: try headers(key: key, timestamp: timestamp, body: body), body: body)
                Issue.record("\(timestamp) verified")
            } catch let error as FalWebhookVerificationError {
                #expect(error.code == .staleTimestamp, "\(timestamp)")
                #expect(!error.message.contains("."), "the skew is shown whole: \(error.message)")
            }
        }
        #expect(FalWebhookVerifier.unixSeconds("1750000000") == 1_750_000_000)
        #expect(FalWebhookVerifier.unixSeconds("") == nil)
    }

    // MARK: Retry-After

    @Test func retryAfterIsClampedOrIgnoredNeverTrapped() {
        let max = FalClient.maxRetryAfter
        let cases: [(String?, Duration?)] = [
            ("120", .seconds(120)), ("0", .zero), ("1.5", .milliseconds(1500)), (" 7 ", .seconds(7)),
            ("1e300", max), ("1e400", max), ("99999999999999999999", max), ("86401", max), ("1e3", .seconds(1000)),
            ("nan", nil), ("inf", nil), ("-inf", nil), ("-1e300", nil), ("-5", nil), ("0x10", nil), ("", nil), (nil, nil),
            ("１２３", nil), ("12 3", nil), ("1.2.3", nil), ("e5", nil), (String(repeating: "9", count: 400), nil),
            ("Fri, 31 Dec 9999 23:59:59 GMT", max), ("Thu, 01 Jan 1970 00:00:00 GMT", .zero),
        ]
        for (text, expected) in cases {
            #expect(FalClient.retryAfter(text) == expected, "\(text ?? "nil")")
        }
        #expect(FalClient.clampedRetryAfter(seconds: .infinity) == max)
        #expect(FalClient.clampedRetryAfter(seconds: -.infinity) == .zero)
        #expect(FalClient.clampedRetryAfter(seconds: .nan) == nil)
        #expect(FalClient.clampedRetryAfter(seconds: .greatestFiniteMagnitude) == max)
    }

    /// fal-sim answers the submit 429 with a hostile `Retry-After`: the client neither traps nor
    /// waits a silly time. A huge one ends the retries at once (rate limited after one attempt);
    /// a meaningless one is ignored (backoff, then rate limited after the bounded attempts).
    @Test(.timeLimit(.minutes(1)), arguments: [
        ("1e300", 1), ("99999999999999999999", 1), ("Fri, 31 Dec 9999 23:59:59 GMT", 1),
        ("nan", 4), ("inf", 4), ("-1e300", 4), ("", 4), ("１２３", 4),
    ])
    func aSubmitAnswered429WithAHostileRetryAfterIsRateLimited(retryAfter: String, attempts: Int) async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let marker = "hostile-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(promptContains: marker, faults: ["submit-429", "retry-after=\(retryAfter)"]))
            let sleeper = SleepRecorder()
            let client = FalClientSimTests.client(await sim.baseURL, sleeper: sleeper)
            do {
                _ = try await client.submit(model: FalClientSimTests.ltx, input: json(#"{"prompt": "\#(marker)"}"#))
                Issue.record("submit succeeded")
            } catch let error as FalError {
                #expect(error.code == .rateLimited, "\(error)")
                #expect(error.mayHaveReachedFal == false)
            }
            #expect(await sim.requests().filter { $0.input.contains(marker) }.count == attempts, "\(retryAfter)")
            #expect(sleeper.sleeps.allSatisfy { $0 <= .seconds(1) }, "\(sleeper.sleeps)")
            // fal-sim sent the header as given, and still answers.
            let reply = try await FalSimTest.send(.POST, await sim.baseURL.absoluteString + "/" + FalClientSimTests.ltx, body: #"{"prompt": "\#(marker)"}"#)
            #expect(reply.status == 429)
            #expect(reply.headers["Retry-After"].first == retryAfter)
            #expect(try await client.submit(model: FalClientSimTests.ltx, input: json(#"{"prompt": "fine"}"#)).requestID.isEmpty == false)
        }
    }

    @Test func faultValuesAreBounded() async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            for faults in [["delay-webhook=99999999999999999999"], ["delay-webhook=3600001"], ["delay-webhook=-1"], ["retry-after=a\u{7}b"]] {
                await #expect(throws: (any Error).self, "\(faults)") { try await sim.addFaultRule(FalSimFaultRule(faults: faults)) }
            }
            try await sim.addFaultRule(FalSimFaultRule(promptContains: "never-matches-\(UUID())", faults: ["delay-webhook=3600000", "retry-after=Fri, 31 Dec 9999 23:59:59 GMT"]))
        }
    }

    // MARK: fal's answer bodies

    @Test(arguments: ["1e300", "-1", "1.5", "99999999999999999999", String(repeating: "9", count: 400), #""3""#, "null"])
    func aStrangeQueuePositionKeepsTheAcceptedRequestID(position: String) async throws {
        let submit = #"{"status": "IN_QUEUE", "request_id": "r1", "status_url": "http://x/a/b/requests/r1/status", "queue_position": \#(position)}"#
        let status = #"{"status": "IN_QUEUE", "queue_position": \#(position)}"#
        let transport = ScriptedTransport([response(200, submit), response(202, status)])
        let client = scriptedClient(transport)
        let request = try await client.submit(model: "a/b", input: json("{}"))
        #expect(request.requestID == "r1")
        #expect(request.queuePosition == nil)
        #expect(try await client.status(request).state == .inQueue(position: nil))
    }

    // MARK: fal-sim's own parsing

    /// Numbers a client sends fal-sim are validated, never converted unchecked.
    @Test(.timeLimit(.minutes(1)), arguments: ["1e400", "-1e400", "1e300", "99999999999999999999", "1.5"])
    func falSimRefusesHostileDurations(duration: String) async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let base = await sim.baseURL.absoluteString
            let reply = try await FalSimTest.send(.POST, base + "/cassetteai/sound-effects-generator", body: #"{"prompt": "x", "duration": \#(duration)}"#)
            #expect(reply.status == 200, "fal validates in the run, not at submit")
            let id = try #require(reply.json?["request_id"]?.stringValue)
            let record = await sim.waitForCompletion(requestID: id)
            #expect(record?.outcome == .error, "\(duration)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func falSimMediaPathsWithHostileLengths() async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let base = await sim.baseURL.absoluteString
            for path in ["99999999999999999999", "-1", "1e3", "１２３", "nan"] {
                #expect(try await FalSimTest.send(.GET, base + "/_sim/media/audio/\(path)/x.wav").status == 404, "\(path)")
            }
            let huge = try await FalSimTest.send(.GET, base + "/_sim/media/audio/9223372036854775807/x.wav")
            #expect(huge.status == 200)
            #expect(huge.body.count == FalSimMediaSize.maximumWAVBytes)
        }
    }

    @Test func pythonReprHandlesEveryDouble() {
        // Through fal-sim's public serialiser: every Double, extremes included, is written.
        for value in [Double.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 1e-5, 1e16, 1e17, 0.1, -0.0, .infinity, -.infinity] {
            #expect(!FalSimJSON.double(value).pythonSerialized().isEmpty)
        }
        #expect(FalSimJSON.double(1e-5).pythonSerialized() == Array("1e-05".utf8))
        #expect(FalSimJSON.double(1e17).pythonSerialized() == Array("1e+17".utf8))
    }
}

/// fal-sim serves at most 600 s of 8 kHz 16-bit mono WAV, 44-byte header.
enum FalSimMediaSize {
    static let maximumWAVBytes = 44 + 600 * 8000 * 2
}
