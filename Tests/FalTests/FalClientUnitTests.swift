import Fal
import Foundation
import Testing

/// Client rules checked on an in-memory transport: wire shape, error mapping, retry decisions.
@Suite struct FalClientUnitTests {
    @Test func submitSendsFalsWireShape() async throws {
        let transport = ScriptedTransport([response(200, #"{"status": "IN_QUEUE", "request_id": "r1", "response_url": "http://x/fal-ai/flux/requests/r1", "status_url": "http://x/fal-ai/flux/requests/r1/status", "cancel_url": "http://x/fal-ai/flux/requests/r1/cancel", "queue_position": 3, "gateway_request_id": "g1"}"#)])
        let client = scriptedClient(transport)
        let options = FalSubmitOptions(priority: .low, startTimeout: .milliseconds(1500), mediaLifetime: .seconds(3600))
        let request = try await client.submit(model: "fal-ai/flux/dev", input: json(#"{"prompt":"a"}"#), webhookURL: "https://hooks.example/fal?token=a b&x=1", options: options)
        #expect(request == FalQueueRequest(requestID: "r1", statusURL: "http://x/fal-ai/flux/requests/r1/status", responseURL: "http://x/fal-ai/flux/requests/r1", cancelURL: "http://x/fal-ai/flux/requests/r1/cancel", gatewayRequestID: "g1", queuePosition: 3))
        let sent = try #require(transport.requests.first)
        #expect(sent.method == "POST")
        #expect(sent.url.absoluteString == "http://fal.test/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fhooks.example%2Ffal%3Ftoken%3Da%20b%26x%3D1")
        #expect(sent.headers["Authorization"] == "Key kid:secret")
        #expect(sent.headers["Content-Type"] == "application/json")
        #expect(sent.headers["X-Fal-Queue-Priority"] == "low")
        #expect(sent.headers["X-Fal-Request-Timeout"] == "2")
        #expect(sent.headers["X-Fal-Object-Lifecycle-Preference"] == #"{"expiration_duration_seconds":3600}"#)
        #expect(sent.body == json(#"{"prompt":"a"}"#))
    }

    @Test func submitFallsBackToOwnerAppURLsOnlyForMissingFields() async throws {
        let transport = ScriptedTransport([response(200, #"{"request_id": "r9", "status_url": "http://fal/custom/status"}"#)])
        let request = try await scriptedClient(transport).submit(model: "fal-ai/ffmpeg-api/merge-audio-video", input: json("{}"))
        #expect(request.statusURL == "http://fal/custom/status")
        #expect(request.responseURL == "http://fal.test/fal-ai/ffmpeg-api/requests/r9")
        #expect(request.cancelURL == "http://fal.test/fal-ai/ffmpeg-api/requests/r9/cancel")
    }

    @Test(arguments: [
        ("fal-ai/flux/dev", "fal-ai/flux"), ("fal-ai/flux", "fal-ai/flux"),
        ("fal-ai/ffmpeg-api/merge-audio-video", "fal-ai/ffmpeg-api"), ("workflows/me/flow/sub/path", "workflows/me/flow"),
        ("comfy/me/graph", "comfy/me/graph"), ("cassetteai/sound-effects-generator", "cassetteai/sound-effects-generator"),
    ])
    func ownerAppRule(model: String, app: String) {
        #expect(FalQueueRequest.appID(ofModel: model) == app)
        let request = FalQueueRequest(fallbackFor: model, requestID: "id", queueURL: "https://queue.fal.run/")
        #expect(request.statusURL == "https://queue.fal.run/\(app)/requests/id/status")
    }

    @Test func submitRejectsNonObjectInputWithoutSending() async {
        let transport = ScriptedTransport([response(200, "{}")])
        await #expect(throws: FalError.self) { try await scriptedClient(transport).submit(model: "m/a", input: json("[1]")) }
        #expect(transport.requests.isEmpty)
    }

    @Test func submitRetriesOnlyWhenFalSurelyDidNotReceiveIt() async throws {
        let ok = response(200, #"{"request_id": "r"}"#)
        let refused = ScriptedTransport([.failure(.cannotConnect("refused")), response(429, "{}", headers: ["Retry-After": "2"]), ok])
        let sleeper = SleepRecorder()
        _ = try await scriptedClient(refused, sleeper: sleeper).submit(model: "m/a", input: json("{}"))
        #expect(refused.requests.count == 3)
        #expect(sleeper.sleeps.last == .seconds(2), "Retry-After is honoured")

        for ambiguous in [response(500, "{}"), response(502, "{}"), response(503, "{}"), response(504, "{}"), .failure(.timedOut("t")),
                          .failure(HTTPTransportError(.connectionLost, mayHaveReachedServer: true, "lost"))] {
            let transport = ScriptedTransport([ambiguous, ok])
            do {
                _ = try await scriptedClient(transport).submit(model: "m/a", input: json("{}"))
                Issue.record("an ambiguous submit failure must throw")
            } catch {
                #expect(error.mayHaveReachedFal)
            }
            #expect(transport.requests.count == 1, "never retried after \(ambiguous)")
        }
    }

    @Test func getsRetryOn429And5xxGatewayAndConnectionErrorsWithBackoff() async throws {
        let transport = ScriptedTransport([
            response(503, "{}"), .failure(.timedOut("t")), response(502, "{}"), response(200, #"{"status": "COMPLETED"}"#),
        ])
        let sleeper = SleepRecorder()
        // Deadlines far off: this test is about the attempts and their backoff. In a loaded full
        // run it once took 16 s in all, and the default 15 s status deadline stopped the
        // retries at the 502.
        let roomy = FalRetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(100), maxDelay: .seconds(1), totalBudget: .seconds(3600))
        let timeouts = FalClientConfiguration.Timeouts(status: .seconds(3600), attempt: .seconds(3600))
        let status = try await scriptedClient(transport, retry: roomy, sleeper: sleeper, timeouts: timeouts).status(sampleRequest)
        #expect(status.isTerminal)
        #expect(transport.requests.count == 4)
        // full jitter with random 0.5: half of 100, 200, 400 ms
        #expect(sleeper.sleeps == [.milliseconds(50), .milliseconds(100), .milliseconds(200)])
    }

    @Test func retriesAreBoundedInAttempts() async {
        let transport = ScriptedTransport([response(429, #"{"detail": "slow down"}"#)])
        do {
            _ = try await scriptedClient(transport).result(sampleRequest)
            Issue.record("expected rateLimited")
        } catch {
            #expect(error.code == .rateLimited)
            #expect(error.httpStatus == 429)
            #expect(error.message == "slow down")
        }
        #expect(transport.requests.count == 4)
    }

    @Test func retriesAreBoundedInTotalTime() async {
        let transport = ScriptedTransport([response(503, "{}", headers: ["Retry-After": "10"])])
        let policy = FalRetryPolicy(maxAttempts: 10, baseDelay: .milliseconds(100), maxDelay: .seconds(1), totalBudget: .seconds(30))
        await #expect(throws: FalError.self) { try await scriptedClient(transport, retry: policy).status(sampleRequest) }
        // Two on a quiet machine; one when the first answer came late under a loaded test run
        // (seen once: 7 s in, a 10 s wait would already pass the deadline). Never a third.
        #expect((1...2).contains(transport.requests.count), "a second 10 s wait would pass the 15 s status deadline")
    }

    @Test func errorMapping() async {
        let cases: [(Result<HTTPTransportResponse, HTTPTransportError>, FalError.Code)] = [
            (response(401, #"{"detail": "No key"}"#), .unauthorized),
            (response(403, "{}"), .unauthorized),
            (response(404, #"{"detail": "Request not found"}"#), .notFound),
            (response(422, #"{"detail": "Unprocessable"}"#), .validation),
            (response(500, #"{"detail": "boom", "error_type": "runner_disconnected"}"#), .modelError),
            (response(400, "not json"), .modelError),
            (response(504, #"{"detail": "timeout"}"#, headers: ["X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"]), .timeout),
        ]
        for (answer, code) in cases {
            let transport = ScriptedTransport([answer])
            do {
                _ = try await scriptedClient(transport).result(sampleRequest)
                Issue.record("expected \(code)")
            } catch {
                #expect(error.code == code)
                #expect(!error.description.contains("secret"))
                if code == .timeout {
                    #expect(error.isUserTimeout)
                    #expect(error.errorType == "request_timeout")
                    #expect(transport.requests.count == 1, "a user start timeout is final")
                }
                if error.httpStatus == 500 { #expect(error.errorType == "runner_disconnected") }
            }
        }
    }

    @Test func validationDetailsAreDecoded() async {
        let body = #"{"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}, {"loc": ["body", "images", 2], "msg": "bad", "type": "content_policy_violation"}]}"#
        do {
            _ = try await scriptedClient(ScriptedTransport([response(422, body)])).result(sampleRequest)
        } catch {
            #expect(error.code == .validation)
            #expect(error.details == [
                FalValidationDetail(location: ["body", "prompt"], message: "field required", type: "missing"),
                FalValidationDetail(location: ["body", "images", "2"], message: "bad", type: "content_policy_violation"),
            ])
            #expect(error.body == json(body))
        }
    }

    @Test func statusParsing() async throws {
        let answers = [
            response(202, #"{"status": "IN_QUEUE", "queue_position": 4}"#),
            response(202, #"{"status": "IN_PROGRESS", "logs": [{"message": "step 1", "level": "INFO", "source": "user", "timestamp": "t"}]}"#),
            response(200, #"{"status": "COMPLETED", "error": "Invalid status code: 422", "error_type": "validation_error", "metrics": {"inference_time": 1.5}}"#),
            response(202, #"{"status": "PAUSED"}"#),
            response(200, #"{"nope": 1}"#),
        ]
        let client = scriptedClient(ScriptedTransport(answers))
        #expect(try await client.status(sampleRequest).state == .inQueue(position: 4))
        let running = try await client.status(sampleRequest, logs: true)
        #expect(running.state == .inProgress)
        #expect(running.logs.first?.message == "step 1")
        #expect(!running.isTerminal)
        let done = try await client.status(sampleRequest)
        #expect(done.state == .completed(error: "Invalid status code: 422", errorType: "validation_error"))
        #expect(done.inferenceTime == 1.5)
        let unknown = try await client.status(sampleRequest)
        #expect(unknown.state == .unknown("PAUSED"))
        #expect(!unknown.isTerminal)
        await #expect(throws: FalError.self) { try await client.status(sampleRequest) }
    }

    @Test func statusSendsLogsFlag() async throws {
        let transport = ScriptedTransport([response(202, #"{"status": "IN_PROGRESS"}"#)])
        let client = scriptedClient(transport)
        _ = try await client.status(sampleRequest, logs: true)
        _ = try await client.status(sampleRequest)
        #expect(transport.requests.map(\.url.query) == ["logs=1", "logs=0"])
    }

    @Test func cancelOutcomes() async throws {
        let answers = [
            response(200, #"{"status": "OK"}"#), response(202, #"{"status": "CANCELLATION_REQUESTED"}"#),
            response(400, #"{"status": "ALREADY_COMPLETED"}"#), response(400, #"{"detail": "done"}"#),
            response(404, #"{"status": "NOT_FOUND"}"#), response(200, #"{"status": "NOT_FOUND"}"#),
        ]
        let transport = ScriptedTransport(answers)
        let client = scriptedClient(transport)
        var outcomes: [FalCancelOutcome] = []
        for _ in answers { outcomes.append(try await client.cancel(sampleRequest)) }
        #expect(outcomes == [.cancelled, .cancellationRequested, .alreadyCompleted, .alreadyCompleted, .notFound, .notFound])
        #expect(transport.requests.allSatisfy { $0.method == "PUT" })
    }

    @Test func resultKeepsRawBytes() async throws {
        let body = #"{"seed": 17454220438242315174, "video": {"url": "u"}}"#
        let bytes = try await scriptedClient(ScriptedTransport([response(200, body)])).result(sampleRequest)
        #expect(bytes == json(body))
    }

    // The bounds below are half the transport's own hang, not a tight figure: a loaded CI
    // machine was seen to stall the whole test process for over 6 s at start-up.
    @Test(.timeLimit(.minutes(2)))
    func aTransportThatIgnoresItsTimeoutIsCutOffAtTheDeadline() async {
        let transport = ScriptedTransport { (_, _) throws(HTTPTransportError) in
            try? await Task.sleep(for: .seconds(60))
            return HTTPTransportResponse(status: 200)
        }
        let client = FalClient(
            configuration: FalClientConfiguration(queueURL: "http://fal.test", timeouts: .init(submit: .milliseconds(200)), retry: .none),
            transport: transport
        )
        let started = ContinuousClock.now
        do {
            _ = try await client.submit(model: "m/a", input: json("{}"))
            Issue.record("expected timeout")
        } catch {
            #expect(error.code == .timeout)
            #expect(error.mayHaveReachedFal)
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    /// A transport that does not return even when cancelled (URLSession on Linux was seen to do
    /// this when cancelled as its own timeout fired): the call still ends at its deadline.
    @Test(.timeLimit(.minutes(2)))
    func aTransportThatIgnoresCancellationIsStillCutOffAtTheDeadline() async {
        let transport = ScriptedTransport { (_, _) throws(HTTPTransportError) in
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().asyncAfter(deadline: .now() + 60) { done.resume() }
            }
            return HTTPTransportResponse(status: 200)
        }
        let client = FalClient(
            configuration: FalClientConfiguration(queueURL: "http://fal.test", timeouts: .init(submit: .milliseconds(200)), retry: .none),
            transport: transport
        )
        let started = ContinuousClock.now
        do {
            _ = try await client.submit(model: "m/a", input: json("{}"))
            Issue.record("expected timeout")
        } catch {
            #expect(error.code == .timeout)
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func retryPolicyIsPure() {
        let policy = FalRetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .milliseconds(300), totalBudget: .seconds(2))
        #expect(policy.backoffCap(afterAttempt: 1) == .milliseconds(100))
        #expect(policy.backoffCap(afterAttempt: 2) == .milliseconds(200))
        #expect(policy.backoffCap(afterAttempt: 3) == .milliseconds(300))
        #expect(policy.backoffCap(afterAttempt: 60) == .milliseconds(300))
        #expect(policy.delay(afterAttempt: 1, elapsed: .zero, retryAfter: nil, random: 0) == .zero)
        #expect(policy.delay(afterAttempt: 2, elapsed: .zero, retryAfter: nil, random: 0.999)! < .milliseconds(200))
        #expect(policy.delay(afterAttempt: 5, elapsed: .zero, retryAfter: nil, random: 0.5) == nil)
        #expect(policy.delay(afterAttempt: 1, elapsed: .milliseconds(1990), retryAfter: nil, random: 0.5) == nil)
        #expect(policy.delay(afterAttempt: 1, elapsed: .zero, retryAfter: .seconds(1), random: 0.5) == .seconds(1))
        #expect(policy.delay(afterAttempt: 1, elapsed: .zero, retryAfter: .seconds(3), random: 0.5) == nil)
        #expect(FalRetryPolicy.none.delay(afterAttempt: 1, elapsed: .zero, retryAfter: nil, random: 0) == nil)
    }

    @Test func configurationDescriptionRedactsTheKey() {
        let configuration = FalClientConfiguration(key: "kid:topsecret")
        #expect(!configuration.description.contains("topsecret"))
        #expect(!"\(configuration)".contains("topsecret"))
    }
}
