import Clapper
import FalSim
import Foundation
import Testing
import TestSupport

/// Per-job options fal's queue offers: priority and a start deadline, sent with every submit and
/// honoured by fal-sim (one request at a time here, so the order and the waiting are real).
@Suite("fal queue options: priority and start deadline, end to end")
struct FalQueueOptionsTests {
    let alice = TestUsers.token("queue-\(UUID().uuidString.prefix(6))")

    static func body(_ prompt: String, _ extra: String) -> [UInt8] {
        Array(#"{"prompt":"\#(prompt)","durationSeconds":2\#(extra)}"#.utf8)
    }

    @Test(.timeLimit(.minutes(1)))
    func aNormalJobOvertakesAQueuedLowOne() async throws {
        var setup = SimSetup()
        setup.concurrency = 1
        setup.runDelay = .milliseconds(100)
        try await withGateway(.sim(setup)) { stack in
            let run = UUID().uuidString.prefix(6)
            // The blocker holds fal's one slot until both others are queued.
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "busy \(run)", faults: ["hold-run"]))
            var ids: [String: String] = [:]
            for (name, extra) in [("busy", ""), ("low", #","priority":"low""#), ("normal", #","priority":"normal""#)] {
                let reply = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: Self.body("\(name) \(run)", extra))
                #expect(reply.status == 202, "\(reply.text)")
                ids[name] = reply.json["jobId"] as? String
                #expect(reply.json["priority"] as? String == (extra.isEmpty ? nil : name))
            }
            #expect(await stack.sim.releaseHeldRuns().count == 1)
            var finishedAt: [String: Date] = [:]
            for name in ["busy", "low", "normal"] {
                let id = try #require(ids[name])
                let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
                #expect(done["status"] as? String == "completed")
                let requestID = try #require(done["videoRequestId"] as? String)
                let record = try #require(await stack.sim.request(id: requestID))
                #expect(record.options["x-fal-queue-priority"] == (name == "busy" ? nil : name))
                finishedAt[name] = record.completedAt
            }
            let low = try #require(finishedAt["low"]), normal = try #require(finishedAt["normal"])
            #expect(normal < low, "normal finished \(normal), low \(low)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aTaskStillQueuedAtItsStartDeadlineFailsStartTimeoutAndIsNotResent() async throws {
        var setup = SimSetup()
        setup.concurrency = 1
        try await withGateway(.sim(setup) { ReconcileSetup.on(&$0) }) { stack in
            let run = UUID().uuidString.prefix(6)
            // The blocker holds fal's one slot until the deadline job has failed. Whichever comes
            // first, fal's webhook or the reconciler's result fetch, must say start_timeout.
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "blocker \(run)", faults: ["hold-run"]))
            let busy = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: Self.body("blocker \(run)", ""))
            #expect(busy.status == 202)
            let late = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: Self.body("deadline \(run)", #","startTimeoutSeconds":1"#))
            let id = try #require(late.json["jobId"] as? String)
            #expect(late.json["startTimeoutSeconds"] as? Int == 1)
            let done = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: alice, until: isFinished)
            #expect(done["status"] as? String == "failed")
            #expect(done["videoErrorCode"] as? String == "start_timeout", "\(done)")
            let records = await stack.sim.requests().filter { $0.input.contains("deadline \(run)") }
            #expect(records.count == 1)
            #expect(records.first?.options["x-fal-request-timeout"] == "1")
            #expect(await stack.sim.releaseHeldRuns().count == 1)
            // Bad values are refused with the field named.
            for extra in [#","startTimeoutSeconds":0"#, #","startTimeoutSeconds":86401"#, #","priority":"urgent""#] {
                let reply = try await stack.gateway.send(.POST, "/v1/jobs", token: alice, body: Self.body("bad \(run)", extra))
                #expect(reply.status == 422, "\(extra): \(reply.status) \(reply.text)")
            }
        }
    }
}
