@testable import Clapper
import FalSim
import Foundation
import Testing
import TestSupport

@Suite("Cost: estimates in the view, spend per user for operators")
struct CostTests {
    @Test func microDollarsAreExactAndPrintAsJSONNumbers() {
        #expect(MicroUSD(pricePerSecond: 0.04, seconds: 5)?.json == "0.2")
        #expect(MicroUSD(pricePerSecond: 0.001, seconds: 3)?.json == "0.003")
        #expect(MicroUSD(pricePerSecond: 0.0002, seconds: 1)?.json == "0.0002")
        #expect(MicroUSD(pricePerSecond: 2, seconds: 3)?.json == "6")
        #expect((MicroUSD(200_000) + MicroUSD(3_000)).json == "0.203")
        #expect(MicroUSD(pricePerSecond: .infinity, seconds: 1) == nil)
        #expect(MicroUSD(pricePerSecond: -1, seconds: 1) == nil)
        #expect(MicroUSD(pricePerSecond: 1e12, seconds: 10) == nil)
    }

    @Test func spendRangesAreUTCDaysAndBounded() {
        #expect(SpendLedger.days(from: "2026-02-27", to: "2026-03-01") == ["2026-02-27", "2026-02-28", "2026-03-01"])
        #expect(SpendLedger.days(from: "2024-12-31", to: "2026-01-01") == nil)  // 367 days
        for bad in [("2026-13-01", "2026-13-01"), ("2026-02-30", "2026-02-30"), ("2026-1-01", "2026-1-01"), ("２０２６-01-01", "2026-01-01"), ("2026-03-02", "2026-03-01"), ("", "")] {
            #expect(SpendLedger.days(from: bad.0, to: bad.1) == nil, "\(bad)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func jobsCarryTheirEstimateAndOperatorsSeeEachUsersSpend() async throws {
        let user = "cost-\(UUID().uuidString.prefix(6))", other = "cost-other-\(UUID().uuidString.prefix(6))"
        try await withGateway { stack in
            let gateway = stack.gateway
            var ids: [String] = []
            for _ in 0..<2 {
                let created = try await gateway.send(.POST, "/v1/jobs", token: TestUsers.token(user), body: jobBody("cost \(UUID())", seconds: 5))
                #expect(created.json["estimatedCostUsd"] as? Double == 0.206)
                #expect(created.json["mergeEstimatedCostUsd"] as? Double == 0.001)
                #expect(created.json["videoEstimatedCostUsd"] as? Double == 0.2)
                #expect(created.json["audioEstimatedCostUsd"] as? Double == 0.005)
                ids.append(try #require(created.json["jobId"] as? String))
            }
            let single = try await gateway.send(.POST, "/v1/jobs", token: TestUsers.token(other), body: jobBody("cost \(UUID())", seconds: 2, audio: false))
            #expect(single.json["estimatedCostUsd"] as? Double == 0.08)
            #expect(single.json["audioEstimatedCostUsd"] is NSNull)
            for id in ids {
                _ = try await waitForJob(id, gateway: gateway, redis: stack.server, token: TestUsers.token(user), until: isFinished)
            }
            let today = SpendLedger.day(Date())
            let admin = ["Authorization": "Bearer \(ReconcileSetup.adminToken)"]
            // A webhook can finish a job before its submit's answer (and spend) is stored: wait for both.
            var reply = try await gateway.send(.GET, "/v1/admin/spend?userId=\(user)&from=\(today)&to=\(today)", headers: admin)
            try await eventually("both jobs' spend recorded") {
                reply = try await gateway.send(.GET, "/v1/admin/spend?userId=\(user)&from=\(today)&to=\(today)", headers: admin)
                return reply.json["estimatedSpendUsd"] as? Double == 0.412
            }
            #expect(reply.status == 200, "\(reply.text)")
            #expect(reply.json["estimatedSpendUsd"] as? Double == 0.412, "\(reply.text)")
            let byModel = try #require(reply.json["byModel"] as? [String: Double])
            #expect(byModel["fal-ai/ltx-video-13b-distilled"] == 0.4)
            #expect(byModel["cassetteai/sound-effects-generator"] == 0.01)
            #expect(byModel["fal-ai/ffmpeg-api/merge-audio-video"] == 0.002)
            #expect((reply.json["byDay"] as? [String: Double])?[today] == 0.412)
            for query in ["userId=\(user)&from=2026-01-02&to=2026-01-01", "userId=\(user)&from=yesterday", "from=\(today)"] {
                #expect(try await gateway.send(.GET, "/v1/admin/spend?\(query)", headers: admin).status == 400, "\(query)")
            }
            #expect(try await gateway.send(.GET, "/v1/admin/spend?userId=\(user)").status == 401)
        }
    }
}
