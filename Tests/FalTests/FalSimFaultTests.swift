import FalSim
import Foundation
import Testing

@Suite(.timeLimit(.minutes(1))) struct FalSimFaultTests {
    let ltx = "fal-ai/ltx-video-13b-distilled"
    let input = #"{"prompt": "a fox"}"#

    @Test func failSendsErrorWebhookWith422() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let submit = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: await receiver.url, faults: "fail")
                let delivery = try #require(await receiver.waitFor(1).first)
                let body = try #require(delivery.json)
                #expect(body["status"] == .string("ERROR"))
                #expect(body["error"] == .string("Invalid status code: 422"))
                #expect(body["payload"]?["detail"] != nil)
                let result = try await FalSimTest.send(.GET, try #require(submit["response_url"]?.stringValue))
                #expect(result.status == 422)
                #expect(await sim.request(id: try #require(submit["request_id"]?.stringValue))?.outcome == .error)
            }
        }
    }

    @Test func payloadErrorSendsNullPayload() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                _ = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: await receiver.url, faults: "payload-error")
                let body = try #require(await receiver.waitFor(1).first?.json)
                #expect(body["status"] == .string("ERROR"))
                #expect(body["payload"] == .null)
                #expect(body["payload_error"]?.stringValue != nil)
            }
        }
    }

    @Test func dropDuplicateAndDelayWebhooks() async throws {
        try await withWebhookReceiver { receiver in
            // Per-run fault: every request's webhook waits 300 ms.
            try await withFalSim(configuration: FalSimTest.configuration { $0.faults = ["delay-webhook=300"] }) { sim in
                let url = await receiver.url
                let dropped = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: url, faults: "drop-webhook")
                let twice = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: url, faults: "duplicate-webhook")
                let twiceID = try #require(twice["request_id"]?.stringValue)
                let record = try #require(await sim.waitForDeliveries(requestID: twiceID, count: 2))
                let completedAt = try #require(record.completedAt)
                #expect(record.deliveries.allSatisfy { $0.at.timeIntervalSince(completedAt) >= 0.25 })
                let deliveries = await receiver.waitFor(2)
                #expect(deliveries.count == 2)
                #expect(deliveries.allSatisfy { $0.headers["X-Fal-Webhook-Request-Id"] == twiceID })
                let droppedRecord = await sim.waitForCompletion(requestID: try #require(dropped["request_id"]?.stringValue))
                #expect(droppedRecord?.deliveries.isEmpty == true)
                #expect(droppedRecord?.faults.contains("drop-webhook") == true)
            }
        }
    }

    @Test func heldWebhooksAreDeliveredOutOfOrder() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let url = await receiver.url
                var ids: [String] = []
                for _ in 0..<3 {
                    let submit = try await FalSimTest.submit(sim, model: ltx, input: input, webhook: url, faults: "hold-webhook")
                    let id = try #require(submit["request_id"]?.stringValue)
                    await sim.wait(requestID: id) { $0.webhookBody != nil }
                    ids.append(id)
                }
                let reply = try await FalSimTest.send(.POST, await sim.baseURL.absoluteString + "/_sim/webhooks/release?order=reverse", headers: [])
                #expect(reply.status == 200)
                let order = await receiver.waitFor(3).compactMap { $0.headers["X-Fal-Webhook-Request-Id"] }
                #expect(order == ids.reversed())
            }
        }
    }

    @Test(arguments: [429, 500, 503])
    func submitErrorStatuses(status: Int) async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let url = await sim.baseURL.absoluteString + "/" + ltx
            let reply = try await FalSimTest.send(.POST, url, body: input, headers: [FalSimTest.auth, ("X-Fal-Sim-Fault", "submit-\(status)")])
            #expect(reply.status == status)
            #expect(reply.json?["detail"] != nil)
            let records = await sim.requests()
            #expect(records.count == 1)
            #expect(records.first?.state == .rejected)
            #expect(records.first?.submitStatus == status)
        }
    }

    @Test func submitStallCreatesTheJobButLosesTheAnswer() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration { $0.stallDuration = .seconds(50) }) { sim in
                let url = await sim.baseURL.absoluteString + "/\(ltx)?fal_webhook=" + (await receiver.url).addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                await #expect(throws: (any Error).self) {
                    _ = try await FalSimTest.send(.POST, url, body: input, headers: [FalSimTest.auth, ("X-Fal-Sim-Fault", "submit-stall")], timeout: .seconds(2))
                }
                let record = try #require(await sim.requests().first)
                #expect(record.submitStatus == 200)
                #expect(await sim.waitForCompletion(requestID: record.id)?.outcome == .ok)
                #expect(await receiver.waitFor(1).count == 1)
            }
        }
    }

    @Test func statusStall() async throws {
        try await withFalSim(configuration: FalSimTest.configuration { $0.stallDuration = .seconds(50) }) { sim in
            let submit = try await FalSimTest.submit(sim, model: ltx, input: input, faults: "status-stall")
            let statusURL = try #require(submit["status_url"]?.stringValue)
            await #expect(throws: (any Error).self) {
                _ = try await FalSimTest.send(.GET, statusURL, timeout: .milliseconds(300))
            }
            // The result endpoint still answers.
            await sim.waitForCompletion(requestID: try #require(submit["request_id"]?.stringValue))
            #expect(try await FalSimTest.send(.GET, try #require(submit["response_url"]?.stringValue)).status == 200)
        }
    }

    @Test func expireResultAndRetention() async throws {
        try await withFalSim(configuration: FalSimTest.configuration { $0.largeResultRetention = .zero; $0.largeResultThreshold = 100 }) { sim in
            let expired = try await FalSimTest.submit(sim, model: ltx, input: input, faults: "expire-result")
            await sim.waitForCompletion(requestID: try #require(expired["request_id"]?.stringValue))
            #expect(try await FalSimTest.send(.GET, try #require(expired["response_url"]?.stringValue)).status == 404)
            #expect(try await FalSimTest.send(.GET, try #require(expired["status_url"]?.stringValue)).status == 200)
            // A result over the (lowered) large threshold with zero retention is gone too.
            let large = try await FalSimTest.submit(sim, model: ltx, input: input)
            await sim.waitForCompletion(requestID: try #require(large["request_id"]?.stringValue))
            #expect(try await FalSimTest.send(.GET, try #require(large["response_url"]?.stringValue)).status == 404)
        }
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let kept = try await FalSimTest.submit(sim, model: ltx, input: input)
            await sim.waitForCompletion(requestID: try #require(kept["request_id"]?.stringValue))
            #expect(try await FalSimTest.send(.GET, try #require(kept["response_url"]?.stringValue)).status == 200)
        }
    }

    @Test func faultRulesByAdminCallAndInProcess() async throws {
        try await withWebhookReceiver { receiver in
            try await withFalSim(configuration: FalSimTest.configuration()) { sim in
                let admin = try await FalSimTest.send(
                    .POST, await sim.baseURL.absoluteString + "/_sim/faults",
                    body: #"{"promptContains": "doomed", "faults": ["fail"], "times": 1}"#, headers: [])
                #expect(admin.status == 200)
                try await sim.addFaultRule(FalSimFaultRule(model: "fal-ai/mmaudio-v2/text-to-audio", faults: ["submit-429"]))
                let bad = try await FalSimTest.send(.POST, await sim.baseURL.absoluteString + "/_sim/faults", body: #"{"faults": ["explode"]}"#, headers: [])
                #expect(bad.status == 400)

                let url = await receiver.url
                let doomed = try await FalSimTest.submit(sim, model: ltx, input: #"{"prompt": "a doomed fox"}"#, webhook: url)
                let again = try await FalSimTest.submit(sim, model: ltx, input: #"{"prompt": "a doomed fox"}"#, webhook: url)
                #expect(await sim.waitForCompletion(requestID: try #require(doomed["request_id"]?.stringValue))?.outcome == .error)
                #expect(await sim.waitForCompletion(requestID: try #require(again["request_id"]?.stringValue))?.outcome == .ok)
                let limited = try await FalSimTest.send(.POST, await sim.baseURL.absoluteString + "/fal-ai/mmaudio-v2/text-to-audio", body: input)
                #expect(limited.status == 429)

                let truth = try await FalSimTest.send(.GET, await sim.baseURL.absoluteString + "/_sim/requests", headers: [])
                let records = try JSONDecoder.falSim.decode([FalSimRequestRecord].self, from: Data(truth.body))
                #expect(records.count == 3)
                #expect(records.map(\.outcome) == [.error, .ok, .rejected])
            }
        }
    }

    @Test func unknownFaultIsRejected() async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let reply = try await FalSimTest.send(
                .POST, await sim.baseURL.absoluteString + "/" + ltx, body: input, headers: [FalSimTest.auth, ("X-Fal-Sim-Fault", "explode")])
            #expect(reply.status == 400)
        }
        await #expect(throws: FalSimError.self) {
            try await withFalSim(configuration: FalSimTest.configuration { $0.faults = ["explode"] }) { _ in }
        }
    }
}

extension JSONDecoder {
    static var falSim: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
