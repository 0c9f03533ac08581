import FalSim
import Foundation
import Testing

/// The faults ops/chaos needs (answers lost after the job was created, failing status and result
/// calls, infrastructure errors, repeated webhooks) and the seeded plan that draws them.
@Suite(.timeLimit(.minutes(1))) struct FalSimChaosTests {
    let ltx = "fal-ai/ltx-video-13b-distilled"
    let input = #"{"prompt": "a fox"}"#

    @Test func submit500AfterCreateRunsTheJob() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let base = await sim.baseURL.absoluteString
                let url = "\(base)/\(ltx)?fal_webhook=" + (await receiver.url).addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let reply = try await FalSimTest.send(.POST, url, body: input, headers: [FalSimTest.auth, ("X-Fal-Sim-Fault", "submit-500-after-create")])
                #expect(reply.status == 500)
                #expect(reply.json?["request_id"] == nil)
                let record = try #require(await sim.requests().first)
                #expect(record.submitStatus == 500)
                #expect(record.state != .rejected)
                #expect(await sim.waitForCompletion(requestID: record.id)?.outcome == .ok)
                let delivery = try #require(await receiver.waitFor(1).first)
                #expect(delivery.headers["X-Fal-Webhook-Request-Id"] == record.id)
                #expect(delivery.json?["status"] == .string("OK"))
            }
        }
    }

    @Test func statusAndResultFailTheirFirstCalls() async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let submit = try await FalSimTest.submit(sim, model: ltx, input: input, faults: "status-500=2,result-500=1")
            let id = try #require(submit["request_id"]?.stringValue)
            let statusURL = try #require(submit["status_url"]?.stringValue)
            let responseURL = try #require(submit["response_url"]?.stringValue)
            await sim.waitForCompletion(requestID: id)
            #expect(try await FalSimTest.send(.GET, statusURL).status == 500)
            #expect(try await FalSimTest.send(.GET, statusURL).status == 500)
            #expect(try await FalSimTest.send(.GET, statusURL).status == 200)
            #expect(try await FalSimTest.send(.GET, responseURL).status == 500)
            let result = try await FalSimTest.send(.GET, responseURL)
            #expect(result.status == 200)
            #expect(result.json?["video"]?["url"]?.stringValue != nil)
        }
    }

    @Test func infraErrorIsA503WithItsType() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let submit = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: await receiver.url, faults: "infra-error")
                let id = try #require(submit["request_id"]?.stringValue)
                let body = try #require(await receiver.waitFor(1).first?.json)
                #expect(body["status"] == .string("ERROR"))
                #expect(body["error"] == .string("Invalid status code: 503"))
                #expect(body["payload"]?["error_type"] == .string("runner_disconnected"))
                let result = try await FalSimTest.send(.GET, try #require(submit["response_url"]?.stringValue))
                #expect(result.status == 503)
                #expect(result.headers["X-Fal-Error-Type"].first == "runner_disconnected")
                let status = try await FalSimTest.send(.GET, try #require(submit["status_url"]?.stringValue))
                #expect(status.json?["status"] == .string("COMPLETED"))
                #expect(status.json?["error_type"] == .string("runner_disconnected"))
                #expect(await sim.request(id: id)?.outcome == .error)
            }
        }
    }

    @Test func repeatWebhookSendsASecondCopyLater() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let submit = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: await receiver.url, faults: "repeat-webhook=300")
                let id = try #require(submit["request_id"]?.stringValue)
                let record = try #require(await sim.waitForDeliveries(requestID: id, count: 2))
                // Delivery times are when each try ended: the second copy starts 300 ms after completion.
                let completedAt = try #require(record.completedAt)
                #expect(record.deliveries.contains { $0.copy == 1 })
                let second = try #require(record.deliveries.first { $0.copy == 2 })
                #expect(second.at.timeIntervalSince(completedAt) >= 0.29)
                #expect(await receiver.waitFor(2).count == 2)
            }
        }
    }

    @Test(arguments: ["status-500=x", "result-500=-1", "repeat-webhook=99999999", "infra-error=", "infra-error=a b"])
    func malformedNewFaultsAreRefused(name: String) async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let reply = try await FalSimTest.send(.POST, await sim.baseURL.absoluteString + "/" + ltx, body: input, headers: [FalSimTest.auth, ("X-Fal-Sim-Fault", name)])
            #expect(reply.status == 400)
        }
    }

    @Test func planIsAFunctionOfSeedModelPromptAndSubmitIndex() throws {
        let plan = try FalSimChaosPlan(seed: 42)
        let prompts = (0..<200).map { "chaos job \($0) of run 42" }
        let forward = prompts.map { plan.faults(model: ltx, prompt: $0, submitIndex: 0) }
        let backward = prompts.reversed().map { plan.faults(model: ltx, prompt: $0, submitIndex: 0) }.reversed()
        #expect(forward == Array(backward))
        #expect(try FalSimChaosPlan(seed: 43).faults(model: ltx, prompt: prompts[0], submitIndex: 0) != forward[0]
            || FalSimChaosPlan(seed: 43).faults(model: ltx, prompt: prompts[1], submitIndex: 0) != forward[1])
        // A mix of outcomes and webhook faults over 200 requests.
        let all = Set(forward.joined())
        #expect(all.contains("fail") && all.contains("infra-error") && all.contains("drop-webhook"))
        // Refusals stop after a few submits of the same request.
        let refusing = try FalSimChaosPlan(seed: 7, rates: ["refuse": 1])
        #expect(refusing.faults(model: ltx, prompt: "p", submitIndex: 0).contains("submit-429"))
        #expect(!refusing.faults(model: ltx, prompt: "p", submitIndex: 5).contains("submit-429"))
        // No drop where the submit answer is lost: nobody could learn the request id.
        let lost = try FalSimChaosPlan(seed: 7, rates: ["after-create": 1, "refuse": 0, "submit-503": 0, "drop": 1])
        #expect(prompts.allSatisfy { !lost.faults(model: ltx, prompt: $0, submitIndex: 0).contains("drop-webhook") })
        #expect(throws: FalSimError.self) { try FalSimChaosPlan(seed: 1, rates: ["nope": 0.1]) }
        #expect(throws: FalSimError.self) { try FalSimChaosPlan(seed: 1, rates: ["fail": 1.5]) }
    }

    @Test func simDrawsFaultsFromThePlan() async throws {
        let plan = try FalSimChaosPlan(seed: 9, rates: ["fail": 1, "jitter": 0])
        try await withFalSim(configuration: FalSimTest.configuration { $0.chaos = plan }) { sim in
            let submit = try await FalSimTest.submit(sim, model: ltx, input: #"{"prompt": "chaos job 1 of run 9"}"#)
            let id = try #require(submit["request_id"]?.stringValue)
            let record = try #require(await sim.waitForCompletion(requestID: id))
            #expect(record.outcome == .error)
            #expect(record.faults == plan.faults(model: ltx, prompt: "chaos job 1 of run 9", submitIndex: 0))
            #expect(record.faults.contains("fail"))
        }
    }
}
