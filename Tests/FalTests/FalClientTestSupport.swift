import Fal
import Foundation
import Synchronization

/// An in-memory `HTTPTransport` answering from a script, recording every request.
final class ScriptedTransport: HTTPTransport {
    typealias Handler = @Sendable (HTTPTransportRequest, Int) async throws(HTTPTransportError) -> HTTPTransportResponse
    private let handler: Handler
    private let log = Mutex<[HTTPTransportRequest]>([])

    init(_ handler: @escaping Handler) {
        self.handler = handler
    }

    /// Answers the n-th request (0-based) with `responses[n]`, repeating the last one.
    convenience init(_ responses: [Result<HTTPTransportResponse, HTTPTransportError>]) {
        self.init { (_, index) throws(HTTPTransportError) in
            try responses[min(index, responses.count - 1)].get()
        }
    }

    var requests: [HTTPTransportRequest] { log.withLock { $0 } }

    func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        let index = log.withLock { requests in
            requests.append(request)
            return requests.count - 1
        }
        return try await handler(request, index)
    }
}

/// A transport that forwards to another, failing the first `count` requests with `error`
/// before sending them (as a refused connection would).
final class FailFirstTransport: HTTPTransport {
    private let inner: any HTTPTransport
    private let error: HTTPTransportError
    private let remaining: Mutex<Int>

    init(_ inner: any HTTPTransport, failing count: Int, with error: HTTPTransportError) {
        self.inner = inner
        self.error = error
        self.remaining = Mutex(count)
    }

    func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        let fail = remaining.withLock { count in
            defer { count -= 1 }
            return count > 0
        }
        if fail { throw error }
        return try await inner.send(request, timeout: timeout)
    }
}

/// Records the sleeps a client asked for, returning at once.
final class SleepRecorder: Sendable {
    private let log = Mutex<[Duration]>([])
    var sleeps: [Duration] { log.withLock { $0 } }

    var sleep: @Sendable (Duration) async throws -> Void {
        { duration in self.log.withLock { $0.append(duration) } }
    }
}

func json(_ text: String) -> [UInt8] { Array(text.utf8) }

func response(_ status: Int, _ body: String = "", headers: [String: String] = [:]) -> Result<HTTPTransportResponse, HTTPTransportError> {
    .success(HTTPTransportResponse(status: status, headers: headers, body: Array(body.utf8)))
}

let sampleRequest = FalQueueRequest(
    requestID: "req-1",
    statusURL: "http://fal.test/fal-ai/flux/requests/req-1/status",
    responseURL: "http://fal.test/fal-ai/flux/requests/req-1",
    cancelURL: "http://fal.test/fal-ai/flux/requests/req-1/cancel"
)

func scriptedClient(
    _ transport: ScriptedTransport,
    retry: FalRetryPolicy = FalRetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(100), maxDelay: .seconds(1), totalBudget: .seconds(30)),
    sleeper: SleepRecorder = SleepRecorder(),
    timeouts: FalClientConfiguration.Timeouts = FalClientConfiguration.Timeouts()
) -> FalClient {
    FalClient(
        configuration: FalClientConfiguration(queueURL: "http://fal.test", key: "kid:secret", timeouts: timeouts, retry: retry),
        transport: transport,
        sleep: sleeper.sleep,
        random: { 0.5 }
    )
}
