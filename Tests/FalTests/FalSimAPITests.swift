import AsyncHTTPClient
import FalSim
import Foundation
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1))) struct FalSimAPITests {
    @Test func submitStatusResultAndCancel() async throws {
        // Long enough that the early checks below surely run before the request completes,
        // even on a loaded machine (waiting for completion is event-driven, not a sleep).
        try await withFalSim(configuration: FalSimTest.configuration { $0.runDelay = .seconds(5) }) { sim in
            let base = await sim.baseURL.absoluteString
            let submit = try await FalSimTest.submit(sim, model: "fal-ai/mmaudio-v2/text-to-audio", input: #"{"prompt": "rain", "duration": 3}"#)
            let id = try #require(submit["request_id"]?.stringValue)
            #expect(UUID(uuidString: id) != nil && id == id.lowercased())
            #expect(submit["status"] == .string("IN_QUEUE"))
            #expect(submit["queue_position"] == .number("0"))
            // The subpath is dropped from the request URLs.
            #expect(submit["status_url"] == .string("\(base)/fal-ai/mmaudio-v2/requests/\(id)/status"))
            #expect(submit["response_url"] == .string("\(base)/fal-ai/mmaudio-v2/requests/\(id)"))
            #expect(submit["cancel_url"] == .string("\(base)/fal-ai/mmaudio-v2/requests/\(id)/cancel"))

            let statusURL = try #require(submit["status_url"]?.stringValue)
            let early = try await FalSimTest.send(.GET, statusURL + "?logs=1")
            #expect(early.status == 202)
            #expect(["IN_QUEUE", "IN_PROGRESS"].contains(early.json?["status"]?.stringValue ?? ""))
            let early2 = try await FalSimTest.send(.GET, statusURL + "?logs=false")
            #expect(early2.status == 202)

            let resultURL = try #require(submit["response_url"]?.stringValue)
            let notYet = try await FalSimTest.send(.GET, resultURL)
            #expect(notYet.status == 400)

            let record = try #require(await sim.waitForCompletion(requestID: id))
            #expect(record.outcome == .ok)
            let done = try await FalSimTest.send(.GET, statusURL + "?logs=true")
            #expect(done.status == 200)
            #expect(done.json?["status"] == .string("COMPLETED"))
            #expect(done.json?["metrics"]?["inference_time"] != nil)

            let result = try await FalSimTest.send(.GET, resultURL)
            #expect(result.status == 200)
            let audio = try #require(result.json?["audio"])
            #expect(audio["content_type"] == .string("audio/wav"))
            let media = try await FalSimTest.send(.GET, try #require(audio["url"]?.stringValue), headers: [])
            #expect(media.status == 200)
            #expect(media.body.count == Int(audio["file_size"]?.doubleValue ?? 0))
            let expectedWAVBytes = 48_044
            #expect(media.body.count == expectedWAVBytes)

            let cancel = try await FalSimTest.send(.PUT, try #require(submit["cancel_url"]?.stringValue))
            #expect(cancel.status == 400)
            #expect(cancel.json?["status"] == .string("ALREADY_COMPLETED"))
            let missing = try await FalSimTest.send(.PUT, "\(base)/fal-ai/mmaudio-v2/requests/\(UUID().uuidString.lowercased())/cancel")
            #expect(missing.status == 404)
            #expect(missing.json?["status"] == .string("NOT_FOUND"))
            // A hand-built URL with the subpath is not the request's URL.
            let wrong = try await FalSimTest.send(.GET, "\(base)/fal-ai/mmaudio-v2/text-to-audio/requests/\(id)/status")
            #expect(wrong.status == 404)
        }
    }

    @Test func cancelWhileQueuedAndQueuePositionsMove() async throws {
        let configuration = FalSimTest.configuration {
            $0.concurrency = 1
            $0.runDelay = .seconds(30)
        }
        try await withFalSim(configuration: configuration) { sim in
            let model = "cassetteai/sound-effects-generator"
            let input = #"{"prompt": "door", "duration": 2}"#
            let first = try await FalSimTest.submit(sim, model: model, input: input)
            let second = try await FalSimTest.submit(sim, model: model, input: input)
            let third = try await FalSimTest.submit(sim, model: model, input: input)
            let firstID = try #require(first["request_id"]?.stringValue)
            await sim.wait(requestID: firstID) { $0.state == .inProgress }
            let thirdStatus = try await FalSimTest.send(.GET, try #require(third["status_url"]?.stringValue))
            #expect(thirdStatus.status == 202)
            #expect(thirdStatus.json?["status"] == .string("IN_QUEUE"))
            #expect(thirdStatus.json?["queue_position"] == .number("1"))

            let cancel = try await FalSimTest.send(.PUT, try #require(second["cancel_url"]?.stringValue))
            #expect(cancel.status == 202)
            #expect(cancel.json?["status"] == .string("CANCELLATION_REQUESTED"))
            let after = try await FalSimTest.send(.GET, try #require(third["status_url"]?.stringValue))
            #expect(after.json?["queue_position"] == .number("0"))
            let secondRecord = await sim.request(id: try #require(second["request_id"]?.stringValue))
            #expect(secondRecord?.outcome == .canceled)
            #expect(secondRecord?.state == .completed)

            // A running request accepts the cancellation request and may still finish.
            let running = try await FalSimTest.send(.PUT, try #require(first["cancel_url"]?.stringValue))
            #expect(running.status == 202)
            #expect(running.json?["status"] == .string("CANCELLATION_REQUESTED"))
        }
    }

    @Test func unauthorizedWithoutOrWithWrongKey() async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let url = await sim.baseURL.absoluteString + "/fal-ai/ltx-video-13b-distilled"
            let none = try await FalSimTest.send(.POST, url, body: #"{"prompt": "x"}"#, headers: [])
            #expect(none.status == 401)
            #expect(none.json?["detail"]?.stringValue != nil)
            let wrong = try await FalSimTest.send(.POST, url, body: #"{"prompt": "x"}"#, headers: [("Authorization", "Key nope")])
            #expect(wrong.status == 401)
            #expect(await sim.requests().isEmpty)
            let jwks = try await FalSimTest.send(.GET, await sim.jwksURL.absoluteString, headers: [])
            #expect(jwks.status == 200)
            #expect(jwks.json?["keys"] != nil)
        }
    }

    @Test func validationErrorsAre422WithFalsDetailList() async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let missing = try await FalSimTest.submit(sim, model: "fal-ai/ltx-video-13b-distilled", input: #"{"num_frames": 121}"#)
            let id = try #require(missing["request_id"]?.stringValue)
            #expect(await sim.waitForCompletion(requestID: id)?.outcome == .error)
            let result = try await FalSimTest.send(.GET, try #require(missing["response_url"]?.stringValue))
            #expect(result.status == 422)
            #expect(result.json == .object(["detail": .array([.object([
                "loc": .array([.string("body"), .string("prompt")]),
                "msg": .string("field required"), "type": .string("value_error.missing"),
            ])])]))
            let status = try await FalSimTest.send(.GET, try #require(missing["status_url"]?.stringValue))
            #expect(status.status == 200)
            #expect(status.json?["status"] == .string("COMPLETED"))

            let tooLong = try await FalSimTest.submit(sim, model: "cassetteai/sound-effects-generator", input: #"{"prompt": "x", "duration": 31}"#)
            let tooLongID = try #require(tooLong["request_id"]?.stringValue)
            await sim.waitForCompletion(requestID: tooLongID)
            let tooLongResult = try await FalSimTest.send(.GET, try #require(tooLong["response_url"]?.stringValue))
            #expect(tooLongResult.status == 422)
            #expect(tooLongResult.json?["detail"] == .array([.object([
                "loc": .array([.string("body"), .string("duration")]),
                "msg": .string("ensure this value is less than or equal to 30"),
                "type": .string("value_error.number.not_le"), "ctx": .object(["limit_value": .number("30")]),
            ])]))

            let notJSON = try await FalSimTest.send(.POST, await sim.baseURL.absoluteString + "/fal-ai/x", body: "{nope")
            #expect(notJSON.status == 422)
        }
    }

    @Test(arguments: [
        ("fal-ai/ltx-video-13b-distilled", #"{"prompt": "a cat"}"#, "video"),
        ("cassetteai/sound-effects-generator", #"{"prompt": "boom", "duration": 4}"#, "audio_file"),
        ("fal-ai/mmaudio-v2", #"{"prompt": "rain", "video_url": "https://x/v.mp4"}"#, "video"),
        ("fal-ai/mmaudio-v2/text-to-audio", #"{"prompt": "rain"}"#, "audio"),
        ("fal-ai/ffmpeg-api/merge-audio-video", #"{"video_url": "https://x/v.mp4", "audio_url": "https://x/a.wav"}"#, "video"),
        ("someone/brand-new-model", #"{"anything": 1}"#, "output"),
    ])
    func modelOutputShapes(model: String, input: String, field: String) async throws {
        try await withFalSim(configuration: FalSimTest.configuration()) { sim in
            let submit = try await FalSimTest.submit(sim, model: model, input: input)
            let id = try #require(submit["request_id"]?.stringValue)
            #expect(await sim.waitForCompletion(requestID: id)?.outcome == .ok)
            let result = try await FalSimTest.send(.GET, try #require(submit["response_url"]?.stringValue))
            #expect(result.status == 200)
            let file = try #require(result.json?[field], "\(result.text)")
            let url = try #require(file["url"]?.stringValue)
            #expect(url.hasPrefix(await sim.baseURL.absoluteString + "/_sim/media/"))
            let media = try await FalSimTest.send(.GET, url, headers: [])
            #expect(media.status == 200)
            #expect(media.body.count == Int(file["file_size"]?.doubleValue ?? -1))
            if model == "fal-ai/ltx-video-13b-distilled" {
                #expect(result.text.contains(#""seed": 17454220438242315174"#))
                #expect(result.json?["prompt"] == .string("a cat"))
            }
        }
    }

    @Test func publicURLPrefixesReturnedURLs() async throws {
        try await withFalSim(configuration: FalSimTest.configuration { $0.publicURL = "https://queue.example.test/" }) { sim in
            #expect(await sim.baseURL.absoluteString == "https://queue.example.test")
        }
    }

    @Test func statusStreamSendsEachChangeThenCloses() async throws {
        let configuration = FalSimTest.configuration {
            // Long enough for the stream to be open before the first change on a loaded machine.
            $0.queueDelay = .seconds(1)
            $0.runDelay = .seconds(1)
            $0.statusStreamHeartbeat = .milliseconds(100)
        }
        try await withFalSim(configuration: configuration) { sim in
            let submit = try await FalSimTest.submit(sim, model: "fal-ai/ltx-video-13b-distilled", input: #"{"prompt": "x"}"#)
            let statusURL = try #require(submit["status_url"]?.stringValue)
            var request = HTTPClientRequest(url: statusURL + "/stream")
            request.headers.add(name: "Authorization", value: "Key sim-key:sim-secret")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
            #expect(response.status.code == 200)
            #expect(response.headers["content-type"].first == "text/event-stream")
            var text = ""
            for try await chunk in response.body { text += String(buffer: chunk) }
            let statuses = text.split(separator: "\n").filter { $0.hasPrefix("data: ") }
                .compactMap { try? FalSimJSON.parse(String($0.dropFirst(6))) }
                .compactMap { $0["status"]?.stringValue }
            #expect(statuses == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"])
            #expect(text.contains(": keep-alive"))
        }
    }
}
