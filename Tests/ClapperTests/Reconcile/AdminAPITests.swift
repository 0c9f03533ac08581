@testable import Clapper
import Fal
import FalSim
import Foundation
import NIOHTTP1
import Testing
import TestSupport

@Suite("Admin API end to end: real Redis, fal-sim, sockets")
struct AdminAPITests {
    let admin = ReconcileSetup.adminToken

    /// The request index answers "which job is this fal request?" while the task runs.
    @Test(.timeLimit(.minutes(1)))
    func aFalRequestIDLeadsToItsJobAndTaskWhileInFlight() async throws {
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim(faults: ["drop-webhook"])), configure: ReconcileSetup.off)) { stack in
            let gateway = stack.gateway
            let user = TestUsers.token("lookup-\(UUID())")
            let jobID = try #require(try await gateway.send(.POST, "/v1/jobs", token: user, body: jobBody("lookup \(UUID())")).json["jobId"] as? String)
            let job = try await gateway.job(jobID, token: user)
            let audioRequest = try #require(job["audioRequestId"] as? String)
            let found = try await gateway.send(.GET, "/v1/admin/requests/\(audioRequest)", token: admin)
            #expect(found.status == 200)
            #expect(found.json["jobId"] as? String == jobID)
            #expect(found.json["task"] as? String == "audio")
            #expect(try await gateway.send(.GET, "/v1/admin/requests/not-a-request", token: admin).status == 404)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func adminRoutesTakeOnlyTheAdminTokenAndTheAdminTokenOpensNoUserRoute() async throws {
        try await withRouterClient(ReconcileSetup.off) { client, _ in
            let user = TestUsers.token("someone-\(UUID())")
            let reconcileBody = Array(#"{"jobIds":["x"],"dryRun":true}"#.utf8)
            for (method, path, body) in [(HTTPMethod.GET, "/v1/admin/jobs", nil), (.POST, "/v1/admin/reconcile", reconcileBody), (.POST, "/v1/admin/jobs/x/retry", nil), (.GET, "/v1/admin/requests/x", nil)] as [(HTTPMethod, String, [UInt8]?)] {
                let none = try await client.send(method, path, body: body)
                #expect(none.status == 401, "\(path) without a token")
                #expect(none.errorCode == "unauthorized")
                let asUser = try await client.send(method, path, token: user, body: body)
                #expect(asUser.status == 401, "\(path) with a user token")
                let wrong = try await client.send(method, path, token: "not-the-admin-token", body: body)
                #expect(wrong.status == 401, "\(path) with a wrong token")
            }
            #expect(try await client.send(.GET, "/v1/jobs", token: admin).status == 401)
            #expect(try await client.send(.POST, "/v1/jobs", token: admin, body: jobBody("x")).status == 401)
            #expect(try await client.send(.GET, "/v1/admin/jobs", token: admin).status == 200)

            // Bodies: unknown fields, both or neither selector, wrong types.
            let unknown = try await client.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"jobIds":["x"],"dryrun":true}"#.utf8))
            #expect(unknown.status == 422)
            #expect(unknown.errorCode == "unknown_field")
            let both = try await client.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"jobIds":["x"],"olderThanSeconds":1}"#.utf8))
            #expect(both.status == 422)
            #expect(try await client.send(.POST, "/v1/admin/reconcile", token: admin, body: Array("{}".utf8)).status == 422)
            #expect(try await client.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"jobIds":"x"}"#.utf8)).status == 400)
            #expect(try await client.send(.POST, "/v1/admin/reconcile", token: admin, body: Array("nope".utf8)).status == 400)
            #expect(try await client.send(.GET, "/v1/admin/jobs?limit=0", token: admin).status == 400)
            #expect(try await client.send(.GET, "/v1/admin/jobs?status=weird", token: admin).status == 400)
            #expect(try await client.send(.POST, "/v1/admin/jobs/\(UUID())/retry", token: admin).status == 404)
        }
    }

    /// Webhooks dropped, reconciler off: a dry run reports what fal says and what would happen,
    /// and leaves every job's version unchanged; the real run then applies it.
    @Test(.timeLimit(.minutes(1)))
    func aDryRunChangesNothingAndTheRealRunFixes() async throws {
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim(faults: ["drop-webhook"])), configure: ReconcileSetup.off)) { stack in
            let gateway = stack.gateway, sim = stack.sim
            let token = TestUsers.token("dry-\(UUID())")
            let ids = try await createJobs(5, gateway: gateway, token: token) { jobBody("dry \($0) \(UUID())", audio: $0 % 2 == 0, merge: $0 % 2 == 0 ? false : nil) }
            for id in ids {
                let view = try await gateway.job(id, token: token)
                for task in ["video", "audio"] {
                    if let requestID = view["\(task)RequestId"] as? String { await sim.waitForCompletion(requestID: requestID) }
                }
            }
            let before = try await versions(ids, gateway: gateway, token: token)

            let listed = try await gateway.send(.GET, "/v1/admin/jobs?status=unfinished&limit=500", token: admin)
            #expect(listed.status == 200)
            let listedJobs = listed.json["jobs"] as? [[String: Any]] ?? []
            #expect(Set(ids).isSubset(of: Set(listedJobs.compactMap { $0["jobId"] as? String })))
            let someTask = (listedJobs.first { $0["jobId"] as? String == ids[0] }?["tasks"] as? [[String: Any]])?.first
            #expect(someTask?["falRequestId"] is String)
            #expect(someTask?["nextCheckAt"] is String)
            #expect(someTask?["status"] as? String == "queued")

            let body = try JSONSerialization.data(withJSONObject: ["jobIds": ids, "dryRun": true])
            let dry = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(body))
            #expect(dry.status == 200)
            let reports = dry.json["reports"] as? [[String: Any]] ?? []
            #expect(reports.count == 8)  // 5 videos, 3 audios
            for report in reports {
                #expect(report["before"] as? String == "queued")
                #expect(report["after"] as? String == "completed")
                #expect(report["action"] as? String == "complete")
                #expect((report["fal"] as? String)?.hasPrefix("COMPLETED") == true)
                #expect(report["changed"] as? Bool == false)
                #expect(report["dryRun"] as? Bool == true)
            }
            #expect(try await versions(ids, gateway: gateway, token: token) == before)

            let real = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(try JSONSerialization.data(withJSONObject: ["jobIds": ids])))
            #expect(real.status == 200)
            for report in real.json["reports"] as? [[String: Any]] ?? [] {
                #expect(report["after"] as? String == "completed")
                #expect(report["changed"] as? Bool == true)
            }
            for id in ids {
                #expect(try await gateway.job(id, token: token)["status"] as? String == "completed")
            }
            // Again: nothing left to do, versions stay.
            let after = try await versions(ids, gateway: gateway, token: token)
            let again = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(try JSONSerialization.data(withJSONObject: ["olderThanSeconds": 0])))
            #expect(again.status == 200)
            #expect(try await versions(ids, gateway: gateway, token: token) == after)
            let unknownJob = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"jobIds":["no-such-job"]}"#.utf8))
            #expect((unknownJob.json["reports"] as? [[String: Any]])?.first?["action"] as? String == "not_found")
        }
    }

    /// A job Clapper stored but never started to submit (a crash right after the write): the
    /// reconcile submits it, since fal surely never got it.
    @Test(.timeLimit(.minutes(1)))
    func aJobNeverSubmittedIsSubmittedOnce() async throws {
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim()), configure: ReconcileSetup.off)) { stack in
            let gateway = stack.gateway, sim = stack.sim, server = stack.server
            let user = "stranded-\(UUID())"
            let token = TestUsers.token(user)
            let marker = "stranded \(UUID())"
            let (worker, redis) = try makeWorker(server: server, simURL: await sim.baseURL.absoluteString, publicURL: gateway.baseURL, transport: URLSessionTransport())
            let request = try CreateJobRequest.parse(jobBody(marker, audio: false), catalog: worker.catalog)
            let job = request.makeJob(id: UUID().uuidString.lowercased(), userID: user, catalog: worker.catalog, at: Date())
            _ = try await worker.processor.store.create(job, idempotency: nil)
            await redis.shutdown()

            let listed = try await gateway.send(.GET, "/v1/admin/jobs?status=queued", token: admin)
            let task = ((listed.json["jobs"] as? [[String: Any]])?.first { $0["jobId"] as? String == job.id }?["tasks"] as? [[String: Any]])?.first
            #expect(task?["submitState"] as? String == "not_started")

            let reply = try await gateway.send(.POST, "/v1/admin/reconcile", token: admin, body: Array(#"{"jobIds":["\#(job.id)"]}"#.utf8))
            let report = try #require((reply.json["reports"] as? [[String: Any]])?.first)
            #expect(report["action"] as? String == "submit")
            #expect(report["after"] as? String == "queued")
            #expect(report["falRequestId"] is String)
            let done = try await waitForJob(job.id, gateway: gateway, redis: server, token: token, until: isFinished)
            #expect(done["status"] as? String == "completed")
            #expect(await sim.requests().filter { $0.input.contains(marker) }.count == 1)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func retryResubmitsAFailedTaskUnderANewRequestAndKeepsTheOldID() async throws {
        try await withGateway(GatewayOptions(fal: .sim(ReconcileSetup.sim()), configure: ReconcileSetup.off)) { stack in
            let gateway = stack.gateway, sim = stack.sim, redis = stack.server
            let token = TestUsers.token("retry-\(UUID())")
            let marker = "flaky-\(UUID())"
            try await sim.addFaultRule(FalSimFaultRule(promptContains: marker, faults: ["fail"], times: 1))
            let id = try #require(try await gateway.send(.POST, "/v1/jobs", token: token, body: jobBody(marker, audio: false)).json["jobId"] as? String)
            let failed = try await waitForJob(id, gateway: gateway, redis: redis, token: token, until: isFinished)
            #expect(failed["status"] as? String == "failed")
            let oldRequest = try #require(failed["videoRequestId"] as? String)

            let retried = try await gateway.send(.POST, "/v1/admin/jobs/\(id)/retry", token: admin)
            #expect(retried.status == 200)
            let done = try await waitForJob(id, gateway: gateway, redis: redis, token: token) { $0["status"] as? String == "completed" }
            let newRequest = try #require(done["videoRequestId"] as? String)
            #expect(newRequest != oldRequest)
            #expect(await sim.requests().filter { $0.input.contains(marker) }.count == 2)

            let listed = try await gateway.send(.GET, "/v1/admin/jobs?limit=500", token: admin)
            let task = ((listed.json["jobs"] as? [[String: Any]])?.first { $0["jobId"] as? String == id }?["tasks"] as? [[String: Any]])?.first
            #expect(task?["previousRequestIds"] as? [String] == [oldRequest])
            #expect(task?["attempts"] as? Int == 2)

            let again = try await gateway.send(.POST, "/v1/admin/jobs/\(id)/retry", token: admin)
            #expect(again.status == 409)
            #expect(again.errorCode == "not_retryable")
        }
    }
}
