@testable import Clapper
import Fal
import FalSim
import Foundation
import Logging
import Redis
import Testing
import TestSupport

@Suite("Reconcile policy: pure schedule arithmetic")
struct ReconcilePolicyTests {
    @Test func firstCheckFollowsTheModelThenBacksOffExponentiallyUpToTheCap() {
        let policy = ReconcilePolicy(defaults: .init(graceSeconds: 5, baseSeconds: 5, factor: 2, maxSeconds: 60))
        let accepted = Date(timeIntervalSince1970: 1_000)
        let first = policy.firstCheck(acceptedAt: accepted, model: "m", expectedSeconds: 45)
        #expect(first == accepted.addingTimeInterval(50))
        // Checks at first, +5, +10, +20, +40, then capped at 60.
        var at = first
        var gaps: [Double] = []
        for _ in 0..<6 {
            let next = policy.nextCheck(after: at, firstCheck: first, model: "m", deadline: nil)
            gaps.append(next.timeIntervalSince(at))
            at = next
        }
        #expect(gaps == [5, 10, 20, 40, 60, 60])
        // Never past the deadline.
        let deadline = first.addingTimeInterval(3)
        #expect(policy.nextCheck(after: first, firstCheck: first, model: "m", deadline: deadline) == deadline)
    }

    @Test func perModelOverridesAndValidation() throws {
        let policy = try ReconcilePolicy.load(json: #"{"defaults":{"graceSeconds":1,"baseSeconds":2,"factor":1.5,"maxSeconds":30},"models":{"fal-ai/mmaudio-v2":{"graceSeconds":0,"baseSeconds":1,"factor":3,"maxSeconds":9}},"submitGraceSeconds":10}"#)
        #expect(policy.schedule(forModel: "fal-ai/mmaudio-v2").factor == 3)
        #expect(policy.schedule(forModel: "other").baseSeconds == 2)
        #expect(policy.submitGraceSeconds == 10)
        #expect(policy.batchSize == 100)
        // A cap beyond fal's result retention would let large results expire unseen.
        #expect(throws: ReconcilePolicy.LoadError.self) { try ReconcilePolicy.load(json: #"{"defaults":{"graceSeconds":1,"baseSeconds":2,"factor":2,"maxSeconds":600}}"#) }
        #expect(throws: ReconcilePolicy.LoadError.self) { try ReconcilePolicy.load(json: "{not json") }
        #expect(try ReconcilePolicy.load(json: nil) == ReconcilePolicy())
        #expect(throws: ClapperConfiguration.Error.self) {
            try ClapperConfiguration(environment: ["CLAPPER_DEV_MODE": "1", "CLAPPER_RECONCILE_POLICY": #"{"batchSize":0}"#])
        }
    }
}

@Suite("Reconciler end to end: real Redis, fal-sim, sockets")
struct ReconcilerTests {
    /// Every webhook dropped: the reconciler alone brings every job to fal-sim's ground truth,
    /// and a subscriber of the user's event stream sees each one finish.
    @Test(.timeLimit(.minutes(2)))
    func droppedWebhooksManyJobsReachGroundTruthThroughTheReconcilerAlone() async throws {
        let count = 200
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim(faults: ["drop-webhook"])), configure: ReconcileSetup.on)) { stack in
            let gateway = stack.gateway, sim = stack.sim
            let user = "recon-\(UUID())"
            let token = TestUsers.token(user)
            let doomed = "doomed-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(model: "fal-ai/ltx-video-13b-distilled", promptContains: doomed, faults: ["fail"]))
            try await sim.addFaultRule(FalSimFaultRule(model: "cassetteai/sound-effects-generator", promptContains: "quiet", faults: ["fail"]))
            let stream = try await UserEventStream.open(gateway: gateway, token: token)
            let started = ContinuousClock.now
            async let seen = stream.collectFinished(count: count)
            let ids = try await createJobs(count, gateway: gateway, token: token) { index in
                // Every 10th video fails; every 7th audio fails; the others complete.
                let prompt = (index % 10 == 0 ? doomed : "fine") + (index % 7 == 0 ? " quiet" : "") + " \(index)"
                return jobBody(prompt, audio: true)
            }
            #expect(ids.count == count)
            let finished = try await seen
            let elapsed = ContinuousClock.now - started
            print("reconciler alone: \(count) jobs (\(count * 2) fal requests, every webhook dropped) finished in \(elapsed)")
            #expect(finished.count == count)

            let records = Dictionary(uniqueKeysWithValues: await sim.requests().map { ($0.id, $0) })
            #expect(records.values.allSatisfy { $0.deliveries.isEmpty })
            for id in ids {
                let view = try await gateway.job(id, token: token)
                #expect(finished[id]?["version"] as? Int == view["version"] as? Int, "the stream saw the final version of \(id)")
                for task in ["video", "audio"] {
                    let requestID = try #require(view["\(task)RequestId"] as? String)
                    let record = try #require(records[requestID])
                    #expect(record.state == .completed)
                    let expected = record.outcome == .ok ? "completed" : "failed"
                    #expect(view["\(task)Status"] as? String == expected, "\(id) \(task): fal says \(String(describing: record.outcome))")
                    if expected == "failed" { #expect(view["\(task)ErrorCode"] as? String == "fal_error") }
                }
                let video = view["videoStatus"] as? String
                #expect(view["status"] as? String == (video == "completed" ? "completed" : "failed"))
            }
            let metrics = try await gateway.send(.GET, "/metrics").text
            #expect(metrics.contains(#"clapper_reconcile_fixes_total{kind="missed_webhook"}"#))
            #expect(metrics.contains("clapper_reconcile_checks_total"))
            #expect(metrics.contains("clapper_reconcile_oldest_unfinished_seconds"))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aResultExpiredBeforeReconciliationFailsWithResultExpired() async throws {
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim(faults: ["drop-webhook", "expire-result"])), configure: ReconcileSetup.on)) { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let token = TestUsers.token("expiry-\(UUID())")
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("gone \(UUID())", audio: false)).json["jobId"] as? String)
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: token, until: isFinished)
            #expect(done["status"] as? String == "failed")
            #expect(done["videoStatus"] as? String == "failed")
            #expect(done["videoErrorCode"] as? String == "result_expired")
            let requestID = try #require(done["videoRequestId"] as? String)
            #expect(await sim.request(id: requestID)?.outcome == .ok)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aTaskPastItsModelTimeoutIsCanceledAtFalAndTimedOut() async throws {
        // One slot at fal, taken for a minute by the first job: the second waits in fal's queue,
        // where a cancel ends it (a running request may finish anyway).
        let slowSim = ReconcileSetup.sim(faults: ["drop-webhook"]) {
            $0.concurrency = 1
            $0.runDelay = .seconds(60)
        }
        try await withGateway(GatewayOptions(fal: .sim(slowSim), configure: {
            ReconcileSetup.on(&$0)
            var catalog = try! ModelCatalog.load(json: ReconcileSetup.catalogJSON)
            catalog.video.timeoutSeconds = 1
            $0.modelCatalogJSON = String(decoding: try! JSONEncoder().encode(catalog), as: UTF8.self)
        })) { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let token = TestUsers.token("slow-\(UUID())")
            let running = try #require(try await gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("slow \(UUID())", audio: false)).json["jobId"] as? String)
            let queued = try #require(try await gateway.send(.POST, "/v1/jobs", token: token, body: jobBody("waiting \(UUID())", audio: false)).json["jobId"] as? String)
            for id in [running, queued] {
                let done = try await waitForJob(id, gateway: gateway, redis: redis, token: token, until: isFinished)
                #expect(done["status"] as? String == "failed")
                #expect(done["videoStatus"] as? String == "timed_out")
                #expect(done["videoErrorCode"] as? String == "timed_out")
            }
            let queuedRequest = try #require(try await gateway.job(queued, token: token)["videoRequestId"] as? String)
            let record = await sim.wait(requestID: queuedRequest) { $0.state == .completed }
            #expect(record?.outcome == .canceled, "the queued request was canceled at fal")
            let metrics = try await gateway.send(.GET, "/metrics").text
            #expect(metrics.contains(#"clapper_reconcile_fixes_total{kind="timeout"}"#))
        }
    }

    /// Two reconciler instances (each its own Redis pool and fal client) on one Redis, working
    /// one backlog round by round: every fal request is asked for its status exactly once, both
    /// instances take part, and every job got each change exactly once.
    @Test(.timeLimit(.minutes(2)))
    func twoInstancesShareABacklogWithoutDoubleWork() async throws {
        let count = 60
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim(faults: ["drop-webhook"])), configure: ReconcileSetup.off)) { stack in
            let gateway = stack.gateway, sim = stack.sim, server = stack.server
            let token = TestUsers.token("backlog-\(UUID())")
            let ids = try await createJobs(count, gateway: gateway, token: token) { jobBody("backlog \($0) \(UUID())", audio: true, merge: false) }
            var requestIDs: [String] = []
            for id in ids {
                let view = try await gateway.job(id, token: token)
                for task in ["video", "audio"] { requestIDs.append(try #require(view["\(task)RequestId"] as? String)) }
            }
            for requestID in requestIDs { await sim.waitForCompletion(requestID: requestID) }

            let simURL = await sim.baseURL.absoluteString
            let countA = CountingTransport(), countB = CountingTransport()
            let (workerA, redisA) = try makeWorker(server: server, simURL: simURL, publicURL: gateway.baseURL, transport: countA)
            let (workerB, redisB) = try makeWorker(server: server, simURL: simURL, publicURL: gateway.baseURL, transport: countB)
            var policy = ReconcileSetup.policy
            policy.batchSize = 10
            let a = Reconciler(worker: TaskReconciler(processor: workerA.processor, queue: workerA.queue, policy: policy), interval: .milliseconds(10), logger: quiet("a"), clock: SystemWallClock())
            let b = Reconciler(worker: TaskReconciler(processor: workerB.processor, queue: workerB.queue, policy: policy), interval: .milliseconds(10), logger: quiet("b"), clock: SystemWallClock())
            var rounds = 0
            while rounds < 100 {
                async let claimedA = a.round()
                async let claimedB = b.round()
                let (ca, cb) = try await (claimedA, claimedB)
                rounds += 1
                // No request asked twice, in this round or any before.
                let merged = countA.statusRequests.merging(countB.statusRequests, uniquingKeysWith: +)
                #expect(merged.values.allSatisfy { $0 == 1 }, "round \(rounds): a status asked twice")
                if ca == 0, cb == 0 { break }
            }
            await redisA.shutdown()
            await redisB.shutdown()
            let merged = countA.statusRequests.merging(countB.statusRequests, uniquingKeysWith: +)
            #expect(Set(merged.keys) == Set(requestIDs))
            #expect(!countA.statusRequests.isEmpty && !countB.statusRequests.isEmpty, "both instances worked")
            #expect(Set(countA.statusRequests.keys).isDisjoint(with: countB.statusRequests.keys))
            print("two instances: \(requestIDs.count) tasks in \(rounds) rounds, A polled \(countA.statusRequests.count), B polled \(countB.statusRequests.count)")

            // create, 2 submit starts, 2 accepts, 2 completions: 7 versions, each once.
            let redis = RedisClient(configuration: RedisConfiguration(url: server.url))
            for id in ids {
                let view = try await gateway.job(id, token: token)
                #expect(view["status"] as? String == "completed")
                #expect(view["version"] as? Int == 7, "\(id) has version \(String(describing: view["version"]))")
                let entries = try await redis.send(RedisCommand("XRANGE", "clapper:{\(id)}:events", "-", "+")).array ?? []
                let versions = entries.compactMap { entry -> Int? in
                    guard let fields = entry.array?.last?.array, let view = fields.last?.bytes,
                          let object = (try? JSONSerialization.jsonObject(with: Data(view))) as? [String: Any] else { return nil }
                    return object["version"] as? Int
                }
                #expect(versions == Array(1...7))
            }
            await redis.shutdown()
        }
    }

    /// The real `clapper` executable, SIGKILLed while its submit to fal stalls, then started
    /// again: the job ends (failed `submit_outcome_unknown`), and fal got exactly one submit.
    @Test(.timeLimit(.minutes(2)))
    func sigkillBetweenAcceptingAndSubmittingNeverSubmitsTwice() async throws {
        let binary = try ClapperProcess.binary()
        let sim = ReconcileSetup.sim(faults: ["submit-stall", "drop-webhook"]) { $0.stallDuration = .seconds(60) }
        try await withRedisServer { server in
            try await withFalSim(configuration: sim) { sim in
                var environment = await ClapperProcess.environment(redis: server, sim: sim, [
                    "CLAPPER_ADMIN_TOKEN": ReconcileSetup.adminToken,
                    "CLAPPER_RECONCILE_INTERVAL_MS": "50",
                    "CLAPPER_FAL_SUBMIT_TIMEOUT_MS": "1000",
                    // The unknown outcome is given up at the model's deadline: 3 s here.
                    "CLAPPER_MODEL_CATALOG": ReconcileSetup.catalogJSON(videoTimeoutSeconds: 3),
                    "CLAPPER_RECONCILE_POLICY": #"{"defaults":{"graceSeconds":0,"baseSeconds":0.2,"factor":2,"maxSeconds":1},"submitGraceSeconds":1}"#,
                ])
                // A free port can be taken by a parallel test before clapper binds it (it then exits
                // with 1, seen once under the full suite): another port is tried. Webhooks are
                // dropped here, so the port in their URLs does not matter.
                func launch() async throws -> (ClapperProcess, Gateway) {
                    var failure: (any Error)?
                    for _ in 0..<3 {
                        let port = try FreePort.find()
                        environment["CLAPPER_HTTP_PORT"] = "\(port)"
                        let process = try ClapperProcess(binary: binary, environment: environment)
                        do {
                            try await process.waitUntilReady(port: port)
                            return (process, Gateway(port: port, configuration: testConfiguration(redis: server)))
                        } catch {
                            await process.kill()
                            failure = error
                        }
                    }
                    throw failure ?? ReconcileTestFailure("clapper did not start")
                }
                let token = TestUsers.token("killed-\(UUID())")
                let marker = "sigkill-\(UUID())"

                let (first, gateway) = try await launch()
                let post = Task { try? await gateway.send(.POST, "/v1/jobs", token: token, body: jobBody(marker, audio: false)) }
                // fal-sim has the submit (and stalls its answer): the job is accepted, its submit in flight.
                var record: FalSimRequestRecord?
                while record == nil {
                    record = await sim.requests().first { $0.input.contains(marker) }
                    if record == nil { try await Task.sleep(for: .milliseconds(10)) }
                }
                await first.kill()
                _ = await post.value
                let webhook = try #require(record?.webhookURL)
                let jobID = try #require(webhook.components(separatedBy: "/v1/webhooks/fal/").last?.split(separator: "/").first.map(String.init))

                let (second, restarted) = try await launch()
                let before = try await restarted.job(jobID, token: token)
                #expect(before["videoStatus"] as? String == "pending" || isFinished(before))
                let done = try await waitForJob(jobID, gateway: restarted, redis: server, token: token, until: isFinished)
                await second.kill()
                #expect(["failed", "completed"].contains(done["status"] as? String ?? ""))
                if done["status"] as? String == "failed" {
                    #expect(done["videoErrorCode"] as? String == "submit_outcome_unknown")
                }
                let submissions = await sim.requests().filter { $0.input.contains(marker) }
                #expect(submissions.count == 1, "fal got \(submissions.count) submits")
            }
        }
    }
}
