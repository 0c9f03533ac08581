import Clapper
import FalSim
import Foundation
import Redis
import Testing
import TestSupport

@Suite("Jobs API end to end: real Redis, fal-sim, sockets")
struct JobsAPITests {
    let alice = TestUsers.token("alice")
    let bob = TestUsers.token("bob")

    @Test(.timeLimit(.minutes(1)))
    func aJobWithAudioCompletesWithBothURLsAndRawOutputs() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let created = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("a cat surfing \(UUID())"))
            #expect(created.status == 202)
            let job = created.json
            let id = try #require(job["jobId"] as? String)
            #expect((job["eventsUrl"] as? String)?.contains("/v1/jobs/\(id)/events") == true)
            #expect(job["version"] as? Int ?? 0 >= 1)

            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: alice, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(done["videoStatus"] as? String == "completed")
            #expect(done["audioStatus"] as? String == "completed")
            let videoURL = try #require(done["videoUrl"] as? String)
            let audioURL = try #require(done["audioUrl"] as? String)
            #expect(videoURL.hasPrefix(await sim.baseURL.absoluteString))
            #expect(audioURL.hasPrefix(await sim.baseURL.absoluteString))
            #expect(done["videoOutput"] is [String: Any])
            #expect(done["audioOutput"] is [String: Any])

            // fal's raw output is kept byte for byte, big integers included.
            let raw = try await gateway.send(.GET, "/v1/jobs/\(id)", token: alice)
            let videoRequestID = try #require(done["videoRequestId"] as? String)
            let record = try #require(await sim.request(id: videoRequestID))
            let payload = try #require(record.webhookBody.flatMap { Fal_payload(in: $0) })
            #expect(raw.text.contains(payload))

            // The audio request was the prompt plus " ambient sounds", for the video's duration.
            let audioRequestID = try #require(done["audioRequestId"] as? String)
            let audioRecord = try #require(await sim.request(id: audioRequestID))
            #expect(audioRecord.model == "cassetteai/sound-effects-generator")
            #expect(audioRecord.input.contains("ambient sounds"))
            #expect(audioRecord.input.contains("\"duration\":2"))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func audioFailsVideoStillCompletes() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            try await sim.addFaultRule(FalSimFaultRule(model: "cassetteai/sound-effects-generator", faults: ["fail"]))
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("rain \(UUID())")).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: alice, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(done["videoStatus"] as? String == "completed")
            #expect(done["videoUrl"] is String)
            #expect(done["audioStatus"] as? String == "failed")
            #expect((done["audioError"] as? String)?.hasPrefix("Audio generation failed: ") == true)
            // fal's error payload (a 422 `detail` list) is kept with the error.
            #expect((done["audioErrorDetail"] as? String)?.contains("\"detail\"") == true)
            #expect(done["audioUrl"] is NSNull)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func videoFailureFailsTheJob() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let marker = "doomed-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(model: "fal-ai/ltx-video-13b-distilled", promptContains: marker, faults: ["fail"]))
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody(marker, audio: false)).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: alice, until: isFinished)
            #expect(done["status"] as? String == "failed")
            #expect(done["videoStatus"] as? String == "failed")
            #expect(done["videoErrorCode"] as? String == "fal_error")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func syncedAudioRunsAfterTheVideoWithItsURL() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("waves \(UUID())", tier: "synced")).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: alice, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(done["audioMode"] as? String == "after-video")
            let videoURL = try #require(done["videoUrl"] as? String)
            let audioRequestID = try #require(done["audioRequestId"] as? String)
            let videoRequestID = try #require(done["videoRequestId"] as? String)
            let audioRecord = try #require(await sim.request(id: audioRequestID))
            let videoRecord = try #require(await sim.request(id: videoRequestID))
            #expect(audioRecord.model == "fal-ai/mmaudio-v2")
            #expect(audioRecord.input.contains(videoURL.replacingOccurrences(of: "/", with: "\\/")) || audioRecord.input.contains(videoURL))
            #expect(audioRecord.receivedAt >= (videoRecord.completedAt ?? .distantFuture))
            #expect(done["audioStatus"] as? String == "completed")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func idempotencyKeyRetryMakesOneSubmission() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway, sim = stack.sim
            let body = jobBody("same \(UUID())", audio: false)
            let key = UUID().uuidString
            let first = try await gateway.send(.POST, "/v1/jobs", token: alice, headers: ["Idempotency-Key": key], body: body)
            let second = try await gateway.send(.POST, "/v1/jobs", token: alice, headers: ["Idempotency-Key": key], body: body)
            #expect(first.status == 202)
            #expect(second.status == 202)
            let id = first.json["jobId"] as? String
            #expect(id != nil)
            #expect(second.json["jobId"] as? String == id)
            let other = try await gateway.send(.POST, "/v1/jobs", token: alice, headers: ["Idempotency-Key": key], body: jobBody("different \(UUID())", audio: false))
            #expect(other.status == 409)
            #expect(other.errorCode == "idempotency_conflict")
            // Bob's same key is his own.
            let bobs = try await gateway.send(.POST, "/v1/jobs", token: bob, headers: ["Idempotency-Key": key], body: body)
            #expect(bobs.status == 202)
            #expect(bobs.json["jobId"] as? String != id)
            let prompt = String(decoding: body, as: UTF8.self)
            let submissions = await sim.requests().filter { prompt.contains(promptOf($0.input) ?? "-") }
            #expect(submissions.count == 2)  // alice's one job, bob's one job
        }
    }

    @Test func validationAuthAndOwnership() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            let noToken = try await gateway.send(.POST, "/v1/jobs", body: jobBody("x"))
            #expect(noToken.status == 401)
            #expect(noToken.errorCode == "unauthorized")
            let badToken = try await gateway.send(.GET, "/v1/jobs", token: "not.a.jwt")
            #expect(badToken.status == 401)
            let expired = JWTSigner(secret: "test-jwt-secret-0123456789abcdef").token(subject: "alice", expiresAt: Date().addingTimeInterval(-60))
            #expect(try await gateway.send(.GET, "/v1/jobs", token: expired).status == 401)

            let malformed = try await gateway.send(.POST, "/v1/jobs", token: alice, body: Array("{not json".utf8))
            #expect(malformed.status == 400)
            let empty = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody(""))
            #expect(empty.status == 422)
            #expect(empty.errorCode == "validation_failed")
            let unknownTier = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("x", tier: "gold"))
            #expect(unknownTier.status == 422)
            let tooLong = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("x", seconds: 31))
            #expect(tooLong.status == 422)
            let unknownField = try await gateway.send(.POST, "/v1/jobs", token: alice, body: Array(#"{"prompt":"x","colour":"red"}"#.utf8))
            #expect(unknownField.status == 422)
            #expect(unknownField.errorCode == "unknown_field")

            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("mine \(UUID())", audio: false)).json["jobId"] as? String)
            #expect(try await gateway.send(.GET, "/v1/jobs/\(id)", token: bob).status == 404)
            #expect(try await gateway.send(.POST, "/v1/jobs/\(id)/cancel", token: bob).status == 404)
            #expect(try await gateway.send(.GET, "/v1/jobs/\(id)", token: alice).status == 200)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelStopsUnfinishedTasksAtFalTooAndAFinishedJobIsAConflict() async throws {
        // One slot at fal, held by a long first job: the second job waits in fal's queue.
        let setup = {
            var setup = SimSetup()
            setup.concurrency = 1
            setup.runDelay = .seconds(30)
            return setup
        }()
        try await withGateway(.sim(setup)) { stack in
            let gateway = stack.gateway, sim = stack.sim
            _ = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("blocker \(UUID())", audio: false))
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody("waiting \(UUID())", audio: false)).json["jobId"] as? String)
            let requestID = try #require(try await gateway.job(id, token: alice)["videoRequestId"] as? String)
            let canceled = try await gateway.send(.POST, "/v1/jobs/\(id)/cancel", token: alice)
            #expect(canceled.status == 200)
            #expect(canceled.json["status"] as? String == "canceled")
            #expect(canceled.json["videoStatus"] as? String == "canceled")
            // fal was asked to cancel, and did (the request was still queued there).
            let record = await sim.wait(requestID: requestID) { $0.state == .completed }
            #expect(record?.outcome == .canceled)
            let version = canceled.json["version"] as? Int
            let again = try await gateway.send(.POST, "/v1/jobs/\(id)/cancel", token: alice)
            #expect(again.status == 409)
            #expect(again.errorCode == "job_finished")
            #expect(try await gateway.job(id, token: alice)["version"] as? Int == version)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func finishedJobsExpireAndLeaveTheRequestIndex() async throws {
        try await withGateway(GatewayOptions(configure: { $0.jobRetention = .seconds(2 * 24 * 3600) })) { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let marker = "ttl-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(model: "cassetteai/sound-effects-generator", promptContains: marker, faults: ["drop-webhook"]))
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody(marker)).json["jobId"] as? String)
            let client = RedisClient(configuration: RedisConfiguration(url: redis.url))
            defer { Task { await client.shutdown() } }
            // The video finishes; the audio's webhook never comes: the job is not settled yet.
            let videoDone = try await waitForJob(id, gateway: gateway, redis: redis, token: alice) { $0["videoStatus"] as? String == "completed" }
            let videoRequest = try #require(videoDone["videoRequestId"] as? String)
            let audioRequest = try #require(videoDone["audioRequestId"] as? String)
            #expect(try await client.send("TTL", "clapper:{\(id)}:job") == .integer(-1))
            #expect(try await client.send("HGET", "clapper:requests", videoRequest) == .null)
            #expect(try await client.send("HGET", "clapper:requests", audioRequest).string == "\(id)|audio")

            _ = try await gateway.send(.POST, "/v1/jobs/\(id)/cancel", token: alice)
            for key in ["clapper:{\(id)}:job", "clapper:{\(id)}:events"] {
                let ttl = try #require(try await client.send("TTL", key).integer)
                #expect(ttl > 2 * 24 * 3600 - 60 && ttl <= 2 * 24 * 3600)
            }
            #expect(try await client.send("HGET", "clapper:requests", audioRequest) == .null)
        }
    }

    /// fal rate-limits the submit past the client's retries: the request surely never reached
    /// fal, so the task goes back to "not started" and the reconciler sends it again later.
    @Test(.timeLimit(.minutes(1)))
    func aSubmitThatNeverReachedFalIsSentAgainLater() async throws {
        try await withGateway(GatewayOptions(configure: {
            $0.reconcileInterval = .milliseconds(50)
            $0.reconcilePolicy = ReconcilePolicy(submitGraceSeconds: 1)
        })) { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let marker = "limited-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(promptContains: marker, faults: ["submit-429"], times: 4))
            let created = try await gateway.send(.POST, "/v1/jobs", token: alice, body: jobBody(marker, audio: false))
            let id = try #require(created.json["jobId"] as? String)
            #expect(created.json["videoStatus"] as? String == "pending")
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: alice, until: isFinished)
            #expect(done["status"] as? String == "completed")
            let attempts = await sim.requests().filter { $0.input.contains(marker) }
            #expect(attempts.filter { $0.submitStatus == 429 }.count == 4)
            #expect(attempts.filter { $0.submitStatus == 200 }.count == 1)
        }
    }

    @Test func listingIsNewestFirstWithACursor() async throws {
        try await withGateway { stack in
            let gateway = stack.gateway
            let user = TestUsers.token("lister-\(UUID())")
            var ids: [String] = []
            for index in 0..<5 {
                let reply = try await gateway.send(.POST, "/v1/jobs", token: user, body: jobBody("list \(index)", audio: false))
                ids.append(try #require(reply.json["jobId"] as? String))
            }
            var seen: [String] = []
            var cursor: String?
            repeat {
                let path = "/v1/jobs?limit=2" + (cursor.map { "&cursor=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" } ?? "")
                let page = try await gateway.send(.GET, path, token: user)
                #expect(page.status == 200)
                let jobs = page.json["jobs"] as? [[String: Any]] ?? []
                seen += jobs.compactMap { $0["jobId"] as? String }
                cursor = page.json["nextCursor"] as? String
            } while cursor != nil
            #expect(seen == ids.reversed())
        }
    }
}

/// The `payload` member of a fal webhook body, as its raw text.
func Fal_payload(in body: String) -> String? {
    guard let range = body.range(of: "\"payload\": ") else { return nil }
    var depth = 0
    var inString = false
    var escaped = false
    var end = range.upperBound
    for index in body[range.upperBound...].indices {
        let c = body[index]
        if inString {
            if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
        } else if c == "\"" { inString = true }
        else if c == "{" || c == "[" { depth += 1 }
        else if c == "}" || c == "]" { depth -= 1; if depth == 0 { end = body.index(after: index); break } }
    }
    return String(body[range.upperBound..<end])
}

func promptOf(_ input: String) -> String? {
    (try? JSONSerialization.jsonObject(with: Data(input.utf8)) as? [String: Any])?["prompt"] as? String
}
