import Fal
import FalSim
import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import Logging
import Synchronization
import Testing
import TestSupport

/// The fal client against fal-sim over real sockets (URLSessionTransport).
@Suite struct FalClientSimTests {
    static let ltx = "fal-ai/ltx-video-13b-distilled"
    static let sfx = "cassetteai/sound-effects-generator"

    static func client(
        _ base: URL,
        key: String? = "sim-key:sim-secret",
        timeouts: FalClientConfiguration.Timeouts = .init(),
        retry: FalRetryPolicy = FalRetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(10), maxDelay: .milliseconds(50), totalBudget: .seconds(20)),
        transport: any HTTPTransport = URLSessionTransport(),
        sleeper: SleepRecorder? = nil
    ) -> FalClient {
        let configuration = FalClientConfiguration(queueURL: base.absoluteString, key: key, timeouts: timeouts, retry: retry)
        if let sleeper {
            return FalClient(configuration: configuration, transport: transport, sleep: sleeper.sleep)
        }
        return FalClient(configuration: configuration, transport: transport)
    }

    static func fault(_ names: String) -> FalSubmitOptions {
        FalSubmitOptions(extraHeaders: ["X-Fal-Sim-Fault": names])
    }

    func expectError(_ code: FalError.Code, _ body: () async throws(FalError) -> Void) async -> FalError? {
        do {
            try await body()
            Issue.record("expected \(code)")
            return nil
        } catch {
            #expect(error.code == code, "\(error)")
            return error
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func submitStatusResultHappyPathKeepsBigNumbers() async throws {
        try await withFalSim { sim in
            let client = Self.client(await sim.baseURL)
            let request = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "a clapperboard", "num_frames": 49}"#))
            #expect(request.statusURL.contains("/fal-ai/ltx-video-13b-distilled/requests/\(request.requestID)/status"))
            let first = try await client.status(request)
            #expect(first.isTerminal == (first.httpStatus == 200))
            await sim.waitForCompletion(requestID: request.requestID)
            let done = try await client.status(request, logs: true)
            #expect(done.state == .completed(error: nil, errorType: nil))
            #expect(done.httpStatus == 200)
            #expect(!done.logs.isEmpty)
            let output = try await client.result(request)
            #expect(String(decoding: output, as: UTF8.self).contains("17454220438242315174"))
            #expect(RawJSON.value(atPath: "seed", in: output).map { String(decoding: $0, as: UTF8.self) } == "17454220438242315174")
            let url = try #require(RawJSON.string(atPath: "video.url", in: output))
            #expect(url.hasPrefix(await sim.baseURL.absoluteString))
            let records = await sim.requests()
            #expect(records.count == 1)
            #expect(records.first?.input == #"{"prompt": "a clapperboard", "num_frames": 49}"#)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func subpathModelsUseTheURLsFalReturned() async throws {
        try await withFalSim { sim in
            let client = Self.client(await sim.baseURL)
            let request = try await client.submit(model: "fal-ai/mmaudio-v2/text-to-audio", input: json(#"{"prompt": "rain"}"#))
            #expect(request.responseURL.hasSuffix("/fal-ai/mmaudio-v2/requests/\(request.requestID)"))
            #expect(request == FalQueueRequest(fallbackFor: "fal-ai/mmaudio-v2/text-to-audio", requestID: request.requestID, queueURL: await sim.baseURL.absoluteString)
                .with(gatewayRequestID: request.gatewayRequestID, queuePosition: request.queuePosition))
            await sim.waitForCompletion(requestID: request.requestID)
            let output = try await client.result(request)
            #expect(RawJSON.string(atPath: "audio.url", in: output) != nil)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func queuedStatusAndCancelOutcomes() async throws {
        try await withFalSim(configuration: FalSimConfiguration(queueDelay: .seconds(30))) { sim in
            let client = Self.client(await sim.baseURL)
            let request = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#))
            let queued = try await client.status(request)
            #expect(queued.httpStatus == 202)
            guard case .inQueue = queued.state else {
                Issue.record("expected IN_QUEUE, got \(queued.state)")
                return
            }
            #expect(try await client.cancel(request) == .cancellationRequested)
            await sim.waitForCompletion(requestID: request.requestID)
            #expect(try await client.cancel(request) == .alreadyCompleted)
            let unknown = FalQueueRequest(fallbackFor: Self.ltx, requestID: UUID().uuidString.lowercased(), queueURL: await sim.baseURL.absoluteString)
            #expect(try await client.cancel(unknown) == .notFound)
            _ = await expectError(.notFound) { () async throws(FalError) in _ = try await client.status(unknown) }
            _ = await expectError(.notFound) { () async throws(FalError) in _ = try await client.result(unknown) }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func validationFailureCarriesTheModelsStatusAndDetails() async throws {
        try await withFalSim { sim in
            let client = Self.client(await sim.baseURL)
            let request = try await client.submit(model: Self.sfx, input: json(#"{"prompt": "boom", "duration": 31}"#))
            await sim.waitForCompletion(requestID: request.requestID)
            let status = try await client.status(request)
            guard case .completed(let error, _) = status.state else {
                Issue.record("expected COMPLETED")
                return
            }
            #expect(error != nil)
            let failure = await expectError(.validation) { () async throws(FalError) in _ = try await client.result(request) }
            #expect(failure?.httpStatus == 422)
            #expect(failure?.details.first?.location.last == "duration")
            #expect(failure?.body.isEmpty == false)

            let failed = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#), options: Self.fault("fail"))
            await sim.waitForCompletion(requestID: failed.requestID)
            let modelFailure = await expectError(.validation) { () async throws(FalError) in _ = try await client.result(failed) }
            #expect(modelFailure?.details.isEmpty == false)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func expiredResultIsNotFound() async throws {
        try await withFalSim { sim in
            let client = Self.client(await sim.baseURL)
            let request = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#), options: Self.fault("expire-result"))
            await sim.waitForCompletion(requestID: request.requestID)
            #expect(try await client.status(request).isTerminal)
            let error = await expectError(.notFound) { () async throws(FalError) in _ = try await client.result(request) }
            #expect(error?.httpStatus == 404)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aWrongKeyIsUnauthorizedAndNotRetried() async throws {
        try await withFalSim { sim in
            let sleeper = SleepRecorder()
            let client = Self.client(await sim.baseURL, key: "sim-key:wrong", sleeper: sleeper)
            let error = await expectError(.unauthorized) { () async throws(FalError) in
                _ = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#))
            }
            #expect(error?.httpStatus == 401)
            #expect(error.map { !$0.description.contains("wrong") } == true, "the key never appears in errors")
            #expect(sleeper.sleeps.isEmpty)
            #expect(await sim.requests().isEmpty)
            let missing = Self.client(await sim.baseURL, key: nil)
            _ = await expectError(.unauthorized) { () async throws(FalError) in
                _ = try await missing.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#))
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aSubmitThatTimedOutAfterSendingIsNotRetried() async throws {
        try await withFalSim(configuration: FalSimConfiguration(stallDuration: .seconds(20))) { sim in
            let sleeper = SleepRecorder()
            let client = Self.client(await sim.baseURL, timeouts: .init(submit: .seconds(1)), sleeper: sleeper)
            let error = await expectError(.timeout) { () async throws(FalError) in
                _ = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#), options: Self.fault("submit-stall"))
            }
            #expect(error?.mayHaveReachedFal == true)
            #expect(sleeper.sleeps.isEmpty)
            let records = await sim.requests()
            #expect(records.count == 1, "exactly one job exists at fal: the submit was not repeated")
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["submit-500", "submit-503"])
    func aSubmitAnswered5xxIsNotRetried(fault: String) async throws {
        try await withFalSim { sim in
            let sleeper = SleepRecorder()
            let client = Self.client(await sim.baseURL, sleeper: sleeper)
            let error = await expectError(fault == "submit-500" ? .modelError : .unavailable) { () async throws(FalError) in
                _ = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#), options: Self.fault(fault))
            }
            #expect(error?.mayHaveReachedFal == true)
            #expect(await sim.requests().count == 1)
            #expect(sleeper.sleeps.isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aSubmitAnswered429IsRetried() async throws {
        try await withFalSim { sim in
            try await sim.addFaultRule(FalSimFaultRule(faults: ["submit-429"], times: 2))
            let sleeper = SleepRecorder()
            let client = Self.client(await sim.baseURL, sleeper: sleeper)
            let request = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#))
            let records = await sim.requests()
            #expect(records.map(\.submitStatus) == [429, 429, 200])
            #expect(records.last?.id == request.requestID)
            #expect(sleeper.sleeps.count == 2)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func a429ThatNeverEndsIsRateLimitedAfterBoundedAttempts() async throws {
        try await withFalSim { sim in
            let client = Self.client(await sim.baseURL, sleeper: SleepRecorder())
            let error = await expectError(.rateLimited) { () async throws(FalError) in
                _ = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#), options: Self.fault("submit-429"))
            }
            #expect(error?.mayHaveReachedFal == false)
            #expect(await sim.requests().count == 4)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aRefusedConnectionIsRetriedThenReported() async throws {
        let refusing = try RefusingPort()
        let sleeper = SleepRecorder()
        let client = Self.client(URL(string: "http://127.0.0.1:\(refusing.port)")!, sleeper: sleeper)
        let error = await expectError(.unavailable) { () async throws(FalError) in
            _ = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#))
        }
        #expect(error?.mayHaveReachedFal == false, "connection refused surely did not reach fal")
        #expect(sleeper.sleeps.count == 3)
        withExtendedLifetime(refusing) {}
    }

    @Test(.timeLimit(.minutes(1)))
    func aSubmitRefusedOnceThenAcceptedCreatesOneJob() async throws {
        try await withFalSim { sim in
            let transport = FailFirstTransport(URLSessionTransport(), failing: 1, with: .cannotConnect("URLError -1004"))
            let client = Self.client(await sim.baseURL, transport: transport, sleeper: SleepRecorder())
            _ = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#))
            #expect(await sim.requests().count == 1)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aStalledStatusIsRetriedThenTimesOutAtTheDeadline() async throws {
        // The stall (60 s) is far past the call deadline (2 s): finishing well before the stall
        // proves the deadline cut the call. The bound is loose because a loaded 2-core CI box
        // delayed the deadline's timer by 3.3 s once (5.3 s against a 5 s bound).
        try await withFalSim(configuration: FalSimConfiguration(stallDuration: .seconds(60))) { sim in
            let client = Self.client(await sim.baseURL, timeouts: .init(status: .seconds(2), attempt: .milliseconds(600)))
            let request = try await client.submit(model: Self.ltx, input: json(#"{"prompt": "x"}"#), options: Self.fault("status-stall"))
            let started = ContinuousClock.now
            let error = await expectError(.timeout) { () async throws(FalError) in _ = try await client.status(request) }
            #expect(error != nil)
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(1100), "more than one attempt was made: \(String(describing: error))")
            #expect(elapsed < .seconds(20), "the call deadline holds, not the 60 s stall")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aWebhookFromFalSimVerifiesAndParses() async throws {
        let (stream, continuation) = AsyncStream.makeStream(of: (FalWebhookHeaders, [UInt8]).self)
        let router = Router()
        router.post("/hook") { request, _ -> HTTPResponse.Status in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            let headers = FalWebhookHeaders { name in HTTPField.Name(name).flatMap { request.headers[$0] } }
            continuation.yield((headers, Array(buffer: body)))
            return .ok
        }
        let receiver = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await receiver.test(.live) { hookClient in
            try await withFalSim(configuration: FalSimConfiguration(userID: "acct-1")) { sim in
                let client = Self.client(await sim.baseURL)
                let verifier = FalWebhookVerifier(configuration: FalWebhookVerifierConfiguration(jwksURL: await sim.jwksURL.absoluteString, pinnedUserID: "acct-1"))
                let request = try await client.submit(
                    model: Self.ltx, input: json(#"{"prompt": "hook"}"#), webhookURL: "http://127.0.0.1:\(hookClient.port!)/hook?job=a%2Fb&x=1"
                )
                var iterator = stream.makeAsyncIterator()
                let (headers, body) = try #require(await iterator.next())
                try await verifier.verify(headers: headers, body: body)
                let webhook = try FalWebhook(parsing: body)
                #expect(webhook.requestID == request.requestID)
                #expect(webhook.status == .ok)
                let payload = try #require(webhook.payload)
                #expect(RawJSON.string(atPath: "video.url", in: payload) != nil)
                #expect(String(decoding: payload, as: UTF8.self).contains("17454220438242315174"))
                #expect(await sim.requests().first?.webhookURL == "http://127.0.0.1:\(hookClient.port!)/hook?job=a%2Fb&x=1")

                let wrong = try await client.submit(
                    model: Self.ltx, input: json(#"{"prompt": "hook"}"#), webhookURL: "http://127.0.0.1:\(hookClient.port!)/hook",
                    options: Self.fault("wrong-signature")
                )
                let (badHeaders, badBody) = try #require(await iterator.next())
                #expect(badHeaders.requestID == wrong.requestID)
                await #expect(throws: FalWebhookVerificationError.self) { try await verifier.verify(headers: badHeaders, body: badBody) }
            }
        }
    }
}

extension FalQueueRequest {
    func with(gatewayRequestID: String?, queuePosition: Int?) -> FalQueueRequest {
        var copy = self
        copy.gatewayRequestID = gatewayRequestID
        copy.queuePosition = queuePosition
        return copy
    }
}
