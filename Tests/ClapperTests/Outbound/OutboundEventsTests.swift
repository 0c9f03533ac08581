@testable import Clapper
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TestSupport

/// Outbound events end to end: endpoints registered through the admin API, a job through
/// fal-sim, deliveries checked by the `standardwebhooks` package (Python, PyPI) at the endpoint.
@Suite("Outbound events", .serialized)
struct OutboundEventsTests {
    static let admin = "test-admin-token"

    @Test(.timeLimit(.minutes(2)))
    func aJobsEventsReachEndpointsSignedRetriedAndFiltered() async throws {
        try await withWebhookReceiver { receiver in
            let options = GatewayOptions.sim(SimSetup()) {
                // Svix's schedule a thousand times faster: the third try comes 0.3 s after the second.
                $0.outbound = OutboundConfiguration(allowedHosts: ["127.0.0.1"], scheduleScale: 0.001)
            }
            try await withGateway(options) { stack in
                let all = try await receiver.register("/ok", types: nil, on: stack.gateway)
                let completedOnly = try await receiver.register("/flaky", types: ["job.completed"], on: stack.gateway)
                let redirected = try await receiver.register("/redirect", types: ["job.completed"], on: stack.gateway)
                #expect(all["secret"] as? String != nil)

                let user = "outbound-\(UUID().uuidString.prefix(8))"
                let created = try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("an announced job", merge: false))
                let jobID = try #require(created.json["jobId"] as? String, "\(created.text)")
                _ = try await waitForJob(jobID, gateway: stack.gateway, redis: stack.server, token: TestUsers.token(user)) { isFinished($0) }

                let seen = try await receiver.until { seen in
                    seen.contains { $0.path == "/ok" && $0.type == "job.completed" && $0.jobID == jobID }
                        && seen.contains { $0.path == "/flaky" && $0.attempt == 3 }
                }
                let ok = seen.filter { $0.path == "/ok" && $0.jobID == jobID }
                #expect(!ok.contains { !$0.verified }, "\(ok)")
                let types = ok.map(\.type)
                #expect(types.filter { $0 == "video.job.submitted" }.count == 1, "\(types)")
                #expect(types.filter { $0 == "audio.job.submitted" }.count == 1, "\(types)")
                #expect(types.filter { $0 == "job.completed" }.count == 1, "\(types)")
                #expect(types.filter { $0 == "job.updated" }.count >= 4, "\(types)")
                #expect(Set(ok.compactMap(\.id)).count == ok.count, "one webhook-id per message")
                let completed = try #require(ok.first { $0.type == "job.completed" })
                #expect(completed.userID == user && completed.provider == "fal" && completed.prompt == "an announced job" && completed.model != nil)
                // The filtered endpoint: only job.completed, the same webhook-id on each of its tries.
                let flaky = seen.filter { $0.path == "/flaky" }
                #expect(flaky.map(\.type) == ["job.completed", "job.completed", "job.completed"])
                #expect(Set(flaky.compactMap(\.id)) == Set([completed.id].compactMap { $0 }))
                #expect(!flaky.contains { !$0.verified })
                // A redirect is not followed: its endpoint's deliveries never reach /ok.
                #expect(!seen.contains { $0.path == "/ok" && !$0.verified })
                let redirectAttempts = try await stack.gateway.send(.GET, "/v1/admin/endpoints/\(try #require(redirected["id"] as? String))/attempts", token: Self.admin)
                let statuses = (redirectAttempts.json["attempts"] as? [[String: Any]] ?? []).compactMap { $0["status"] as? Int }
                #expect(statuses.first == 307, "\(redirectAttempts.text)")
                // Attempts as the operator sees them: two failures, then delivered.
                let attempts = try await stack.gateway.send(.GET, "/v1/admin/endpoints/\(try #require(completedOnly["id"] as? String))/attempts", token: Self.admin)
                let log = (attempts.json["attempts"] as? [[String: Any]] ?? []).map { ($0["status"] as? Int, $0["ok"] as? Bool) }
                #expect(log.map(\.0) == [204, 500, 500], "\(attempts.text)")
                // The list shows no secrets.
                let list = try await stack.gateway.send(.GET, "/v1/admin/endpoints", token: Self.admin)
                #expect((list.json["endpoints"] as? [[String: Any]])?.count == 3)
                #expect(!list.text.contains("whsec_"))
            }
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aDeadEndpointIsExhaustedThenReplayedAndOneFailingTooLongIsDisabled() async throws {
        try await withWebhookReceiver { receiver in
            let options = GatewayOptions.sim(SimSetup()) {
                // Eight tries in about 2 s.
                $0.outbound = OutboundConfiguration(allowedHosts: ["127.0.0.1"], scheduleScale: 0.00002)
            }
            try await withGateway(options) { stack in
                let down = try await receiver.register("/down", types: ["job.completed"], on: stack.gateway)
                let id = try #require(down["id"] as? String)
                let user = "outbound-dead-\(UUID().uuidString.prefix(8))"
                let created = try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("a job nobody hears", audio: false))
                let jobID = try #require(created.json["jobId"] as? String, "\(created.text)")
                _ = try await waitForJob(jobID, gateway: stack.gateway, redis: stack.server, token: TestUsers.token(user)) { isFinished($0) }
                // Every try fails: after the eighth the message is exhausted.
                var exhausted: [String] = []
                let clock = ContinuousClock(), deadline = clock.now + .seconds(30)
                while exhausted.isEmpty, clock.now < deadline {
                    let attempts = try await stack.gateway.send(.GET, "/v1/admin/endpoints/\(id)/attempts", token: Self.admin)
                    exhausted = attempts.json["exhausted"] as? [String] ?? []
                    if exhausted.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(exhausted.count == 1 && exhausted.first?.contains(jobID) == true, "\(exhausted)")
                let tries = try await receiver.received().filter { $0.path == "/down" }.count
                #expect(tries == OutboundSchedule().attempts)
                // The endpoint comes back; the operator replays what was exhausted.
                try await receiver.up()
                let replay = try await stack.gateway.send(.POST, "/v1/admin/endpoints/\(id)/replay", token: Self.admin)
                #expect(replay.status == 202 && replay.json["replayed"] as? Int == 1, "\(replay.text)")
                let seen = try await receiver.until { $0.filter { $0.path == "/down" }.count > OutboundSchedule().attempts }
                #expect(!seen.contains { $0.path == "/down" && !$0.verified })
                let after = try await stack.gateway.send(.GET, "/v1/admin/endpoints/\(id)/attempts", token: Self.admin)
                #expect((after.json["exhausted"] as? [String])?.isEmpty == true)
                #expect(((after.json["attempts"] as? [[String: Any]])?.first?["ok"] as? Bool) == true)
            }
        }
        // Failing longer than CLAPPER_OUTBOUND_DISABLE_AFTER_HOURS (here 0.3 s) disables it.
        try await withWebhookReceiver { receiver in
            let options = GatewayOptions.sim(SimSetup()) {
                var outbound = OutboundConfiguration(allowedHosts: ["127.0.0.1"], scheduleScale: 0.0001)
                outbound.disableAfter = .milliseconds(300)
                $0.outbound = outbound
            }
            try await withGateway(options) { stack in
                let id = try #require(try await receiver.register("/down", types: nil, on: stack.gateway)["id"] as? String)
                let user = "outbound-off-\(UUID().uuidString.prefix(8))"
                _ = try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("a job for a dead endpoint", audio: false))
                var disabled = false
                let clock = ContinuousClock(), deadline = clock.now + .seconds(30)
                while !disabled, clock.now < deadline {
                    let list = try await stack.gateway.send(.GET, "/v1/admin/endpoints", token: Self.admin)
                    disabled = (list.json["endpoints"] as? [[String: Any]])?.first { $0["id"] as? String == id }?["disabled"] as? Bool == true
                    if !disabled { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(disabled)
            }
        }
    }

    /// CLAPPER_OUTBOUND_RATE_PER_SECOND: an endpoint gets at most that many tries a second; the
    /// rest wait for the next second (a lower bound on time only: a loaded machine is slower).
    @Test(.timeLimit(.minutes(1)))
    func anEndpointsRateIsHeld() async throws {
        try await withWebhookReceiver { receiver in
            let options = GatewayOptions.sim(SimSetup()) {
                var outbound = OutboundConfiguration(allowedHosts: ["127.0.0.1"])
                outbound.ratePerSecond = 2
                $0.outbound = outbound
            }
            try await withGateway(options) { stack in
                let endpoint = try #require(try await receiver.register("/ok", types: nil, on: stack.gateway)["id"] as? String)
                // Three jobs: each announces at least its creation (job.updated) and its end
                // (job.updated, job.completed), so at least 9 tries whatever states a loaded
                // machine skips in between (one job alone gave 4 under load, 6 or more when quiet).
                let user = "outbound-rate-\(UUID().uuidString.prefix(8))"
                var jobIDs: Set<String> = []
                for index in 0..<3 {
                    let created = try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("a chatty job \(index)", merge: false))
                    jobIDs.insert(try #require(created.json["jobId"] as? String))
                }
                let delivered = try await receiver.until { events in
                    jobIDs.allSatisfy { id in events.contains { $0.type == "job.completed" && $0.jobID == id } }
                }
                // A try is recorded after its answer arrives: the last one may be seen by the
                // receiver before it is listed (one run listed 5 of 6).
                let clock = ContinuousClock(), deadline = clock.now + .seconds(20)
                var attempts = try await stack.gateway.send(.GET, "/v1/admin/endpoints/\(endpoint)/attempts", token: Self.admin)
                while (attempts.json["attempts"] as? [Any] ?? []).count < delivered.count, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    attempts = try await stack.gateway.send(.GET, "/v1/admin/endpoints/\(endpoint)/attempts", token: Self.admin)
                }
                let times = (attempts.json["attempts"] as? [[String: Any]] ?? []).compactMap { ($0["at"] as? String).flatMap { try? Date($0, strategy: .iso8601) } }.sorted()
                #expect(times.count >= 9, "\(attempts.text)")
                let span = (times.last ?? .distantPast).timeIntervalSince(times.first ?? .distantPast)
                // n tries at 2 in each clock second: they cover n/2 seconds, so the last starts at
                // least n/2 - 2 seconds after the first (the first second may be almost over).
                #expect(span >= Double(times.count) / 2 - 2, "\(times.count) tries in \(span) s")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func endpointsOnInnerAddressesAreRefused() async throws {
        try await withGateway(.sim(SimSetup()) { $0.outbound = OutboundConfiguration() }) { stack in
            for url in ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "ftp://example.com/", "http://user:pw@example.com/"] {
                let reply = try await stack.gateway.send(.POST, "/v1/admin/endpoints", token: Self.admin, body: Array(try JSONSerialization.data(withJSONObject: ["url": url])))
                #expect(reply.status == 422, "\(url): \(reply.status) \(reply.text)")
                #expect(reply.errorCode == "endpoint_url_refused", "\(url)")
            }
            let unknown = try await stack.gateway.send(.POST, "/v1/admin/endpoints", token: Self.admin, body: Array(#"{"url":"https://example.com/","eventTypes":["job.exploded"]}"#.utf8))
            #expect(unknown.errorCode == "invalid_event_type")
            let user = try await stack.gateway.send(.POST, "/v1/admin/endpoints", token: TestUsers.token("someone"), body: Array(#"{"url":"https://example.com/"}"#.utf8))
            #expect(user.status == 401 || user.status == 403)
        }
    }

    @Test func standardWebhooksSignatureAndTheAddressRules() throws {
        // Standard Webhooks' own example: secret, id, timestamp, body and the signature it gives.
        let signer = try #require(OutboundSignature(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let headers = signer.headers(messageID: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8))
        #expect(headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(OutboundSignature(secret: "not-a-secret") == nil)
        #expect(OutboundSignature(secret: OutboundSignature.newSecret()) != nil)
        for (address, isPublic) in [([8, 8, 8, 8], true), ([127, 0, 0, 1], false), ([10, 0, 0, 1], false), ([172, 20, 0, 1], false), ([172, 32, 0, 1], true),
                                    ([192, 168, 1, 1], false), ([169, 254, 169, 254], false), ([100, 64, 0, 1], false), ([0, 0, 0, 0], false), ([224, 0, 0, 1], false)] as [([UInt8], Bool)] {
            #expect(OutboundAddressGuard.isPublic(address) == isPublic, "\(address)")
        }
        #expect(!OutboundAddressGuard.isPublic([0xFE, 0x80] + Array(repeating: 0, count: 13) + [1]))
        #expect(!OutboundAddressGuard.isPublic([0xFD] + Array(repeating: 0, count: 15)))
        #expect(OutboundAddressGuard.isPublic([0x20, 0x01, 0x48, 0x60] + Array(repeating: 0, count: 11) + [0x88]))
        // The schedule: Svix's delays, then nothing.
        let schedule = OutboundSchedule()
        #expect((1...8).map { schedule.delay(beforeAttempt: $0, jitter: 0) } == [0, 5, 300, 1800, 7200, 18000, 36000, 36000])
        #expect(schedule.delay(beforeAttempt: 9) == nil)
    }

    @Test func eachChangeAnnouncesWhatHappened() {
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        var job = JobFixture.job(audio: true)
        #expect(OutboundEventType.of(before: nil, after: job) == [.jobUpdated])
        var next = job
        _ = next.apply(.video, .accepted(requestID: "v", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0)
        #expect(OutboundEventType.of(before: job, after: next) == [.videoSubmitted, .jobUpdated])
        job = next
        _ = next.apply(.audio, .accepted(requestID: "a", statusURL: nil, responseURL: nil, cancelURL: nil), at: t0)
        _ = next.apply(.video, .completed(mediaURL: "https://v"), at: t0)
        #expect(OutboundEventType.of(before: job, after: next) == [.audioSubmitted, .jobUpdated])
        job = next
        _ = next.apply(.audio, .failed(TaskError(code: "fal_error", message: "x")), at: t0)
        #expect(OutboundEventType.of(before: job, after: next) == [.jobUpdated, .jobCompleted], "audio fails alone: the job completes")
    }
}

/// `webhook_receiver.py`, an operator's endpoint that verifies with `standardwebhooks`.
struct WebhookReceiver: Sendable {
    let port: Int

    struct Seen: Sendable {
        var path: String, id: String?, verified: Bool, type: String?, jobID: String?, attempt: Int
        var userID: String?, provider: String?, model: String?, prompt: String?
    }

    func register(_ path: String, types: [String]?, on gateway: Gateway) async throws -> [String: Any] {
        var body: [String: Any] = ["url": "http://127.0.0.1:\(port)\(path)"]
        if let types { body["eventTypes"] = types }
        let reply = try await gateway.send(.POST, "/v1/admin/endpoints", token: OutboundEventsTests.admin, body: Array(try JSONSerialization.data(withJSONObject: body)))
        #expect(reply.status == 201, "\(reply.text)")
        let secret = try #require(reply.json["secret"] as? String)
        try await post("/_secret", ["path": path, "secret": secret])
        return reply.json
    }

    func up() async throws { try await post("/_up", [:]) }

    private func post(_ path: String, _ object: [String: Any]) async throws {
        var request = URLRequest(url: try #require(URL(string: "http://127.0.0.1:\(port)\(path)")))
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: object)
        _ = try await URLSession.shared.data(for: request)
    }

    func received() async throws -> [Seen] {
        let (data, _) = try await URLSession.shared.data(from: try #require(URL(string: "http://127.0.0.1:\(port)/_received")))
        return (try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []).map {
            Seen(path: $0["path"] as? String ?? "", id: $0["id"] as? String, verified: $0["verified"] as? Bool ?? false, type: $0["type"] as? String,
                 jobID: $0["jobId"] as? String, attempt: $0["attempt"] as? Int ?? 0, userID: $0["userId"] as? String, provider: $0["provider"] as? String,
                 model: $0["model"] as? String, prompt: $0["prompt"] as? String)
        }
    }

    /// What it received once `done` holds (asked every 50 ms, for up to 30 s).
    func until(_ done: ([Seen]) -> Bool) async throws -> [Seen] {
        let clock = ContinuousClock(), deadline = clock.now + .seconds(30)
        var seen = try await received()
        while !done(seen), clock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            seen = try await received()
        }
        return seen
    }
}

func withWebhookReceiver<T: Sendable>(_ body: (WebhookReceiver) async throws -> T) async throws -> T {
    try await withPythonService("webhook_receiver.py") { line in
        try await body(WebhookReceiver(port: try #require(Int(line), "the receiver said: \(line)")))
    }
}
