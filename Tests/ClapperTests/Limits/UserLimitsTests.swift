import FalSim
import Foundation
import Redis
import Testing
import TestSupport

@testable import Clapper

/// Per-user limits (issue 18): held in the job script, across instances, before anything is
/// stored or submitted; overrides per user through the admin API.
@Suite("User limits: jobs in flight, jobs per minute, spend per day")
struct UserLimitsTests {
    let user = "limits-\(UUID().uuidString.prefix(8))"
    var token: String { TestUsers.token(user) }
    let admin = ["Authorization": "Bearer \(ReconcileSetup.adminToken)"]

    static func body(_ prompt: String) -> [UInt8] {
        Array(#"{"prompt":"\#(prompt)","durationSeconds":2}"#.utf8)
    }

    func expectRefused(_ reply: Gateway.Reply, _ code: String, maxRetryAfter: Int) {
        #expect(reply.status == 429, "\(reply.status) \(reply.text)")
        #expect((reply.json["error"] as? [String: Any])?["code"] as? String == code, "\(reply.text)")
        let retry = reply.headers.first(name: "Retry-After").flatMap { Int($0) }
        #expect(retry.map { (1...maxRetryAfter).contains($0) } == true, "Retry-After \(String(describing: retry))")
    }

    @Test(.timeLimit(.minutes(1)))
    func jobsInFlightAreCappedUntilOneFinishes() async throws {
        try await withGateway(.sim(SimSetup()) { $0.userLimits.maxInFlight = 2 }) { stack in
            let run = UUID().uuidString.prefix(6)
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "held \(run)", faults: ["hold-run"]))
            var ids: [String] = []
            for index in 0..<2 {
                let reply = try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: Self.body("held \(run) \(index)"))
                #expect(reply.status == 202)
                ids.append(try #require(reply.json["jobId"] as? String))
            }
            let refused = try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: Self.body("held \(run) 2"))
            expectRefused(refused, "limit_in_flight", maxRetryAfter: 60)
            // Nothing of the refused job was stored or sent.
            let listed = try await stack.gateway.send(.GET, "/v1/jobs", token: token)
            #expect((listed.json["jobs"] as? [Any])?.count == 2)
            #expect(await stack.sim.requests().filter { $0.input.contains("held \(run)") }.count == 2)
            // Another user is not held back by this one.
            #expect(try await stack.gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user + "-other"), body: Self.body("other \(run)")).status == 202)

            await stack.sim.releaseHeldRuns()
            for id in ids { _ = try await waitForJob(id, gateway: stack.gateway, redis: stack.server, token: token, until: isFinished) }
            let again = try await stack.gateway.send(.POST, "/v1/jobs", token: token, body: Self.body("after \(run)"))
            #expect(again.status == 202, "a finished job frees its place: \(again.text)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func concurrentCreatesOnTwoInstancesNeverPassTheLimit() async throws {
        let options = GatewayOptions(fal: .sim(SimSetup().configuration), gateways: 2) { $0.userLimits.maxInFlight = 5 }
        try await withGateway(options) { stack in
            let run = UUID().uuidString.prefix(6)
            try await stack.sim.addFaultRule(FalSimFaultRule(promptContains: "race \(run)", faults: ["hold-run"]))
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        try await stack.gateways[index % 2].send(.POST, "/v1/jobs", token: token, body: Self.body("race \(run) \(index)")).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 202 }.count == 5, "\(statuses.sorted())")
            #expect(statuses.filter { $0 == 429 }.count == 15)
            #expect(await stack.sim.requests().filter { $0.input.contains("race \(run)") }.count == 5)
            await stack.sim.releaseHeldRuns()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func jobsPerMinuteRefillAsTimePasses() async throws {
        let clock = ManualClock()
        var options = GatewayOptions(fal: .sim(SimSetup().configuration), gateways: 2) { $0.userLimits.jobsPerMinute = 3 }
        options.clock = clock
        try await withGateway(options) { stack in
            for index in 0..<3 {
                #expect(try await stack.gateways[index % 2].send(.POST, "/v1/jobs", token: token, body: Self.body("rate \(index)")).status == 202)
            }
            // Three a minute: the next whole job is 20 s away, on either instance.
            expectRefused(try await stack.gateways[1].send(.POST, "/v1/jobs", token: token, body: Self.body("rate 3")), "limit_jobs_per_minute", maxRetryAfter: 20)
            clock.advance(by: .seconds(10))
            expectRefused(try await stack.gateways[0].send(.POST, "/v1/jobs", token: token, body: Self.body("rate 4")), "limit_jobs_per_minute", maxRetryAfter: 10)
            clock.advance(by: .seconds(10))
            #expect(try await stack.gateways[0].send(.POST, "/v1/jobs", token: token, body: Self.body("rate 5")).status == 202)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func anOperatorSetsOneUsersSpendPerDay() async throws {
        try await withGateway(.sim(SimSetup()) { ReconcileSetup.off(&$0) }) { stack in
            let gateway = stack.gateway
            let path = "/v1/admin/users/\(user)/limits"
            // Bad overrides are refused, naming the field.
            for (body, status) in [(#"{"maxInFlight":-1}"#, 422), (#"{"jobsPerMinute":1.5}"#, 422), (#"{"spendPerDayUsd":1e300}"#, 422),
                                   (#"{"maxInFlight":true}"#, 400), (#"{"burst":1}"#, 422), ("[]", 400)] {
                let reply = try await gateway.send(.PUT, path, headers: admin, body: Array(body.utf8))
                #expect(reply.status == status, "\(body): \(reply.status) \(reply.text)")
            }
            #expect(try await gateway.send(.PUT, path, body: Array(#"{"spendPerDayUsd":0.1}"#.utf8)).status == 401)

            let set = try await gateway.send(.PUT, path, headers: admin, body: Array(#"{"spendPerDayUsd":0.1}"#.utf8))
            #expect(set.status == 200, "\(set.text)")
            #expect((set.json["limits"] as? [String: Any])?["spendPerDayUsd"] as? Double == 0.1)
            #expect((set.json["overrides"] as? [String: Any])?["maxInFlight"] is NSNull)

            // A 2 s video is $0.08: the first fits under $0.10, the second would not once fal took the first.
            let first = try await gateway.send(.POST, "/v1/jobs", token: token, body: Self.body("spend 1"))
            #expect(first.status == 202)
            let id = try #require(first.json["jobId"] as? String)
            _ = try await waitForJob(id, gateway: gateway, redis: stack.server, token: token, until: isFinished)
            try await eventually("the first job's spend recorded") {
                let shown = try await gateway.send(.GET, path, headers: admin)
                return (shown.json["usage"] as? [String: Any])?["spentTodayUsd"] as? Double == 0.08
            }
            expectRefused(try await gateway.send(.POST, "/v1/jobs", token: token, body: Self.body("spend 2")), "limit_spend_per_day", maxRetryAfter: 86_400)
            // Others keep the default (no limit); clearing the override lifts it.
            #expect(try await gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user + "-other"), body: Self.body("spend other")).status == 202)
            let cleared = try await gateway.send(.DELETE, path, headers: admin)
            #expect((cleared.json["limits"] as? [String: Any])?["spendPerDayUsd"] as? Double == 0)
            #expect(try await gateway.send(.POST, "/v1/jobs", token: token, body: Self.body("spend 3")).status == 202)
        }
    }
}
