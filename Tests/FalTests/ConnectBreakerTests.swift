import Fal
import FalSim
import Foundation
import Synchronization
import Testing
import TestSupport

@Suite("Connect breaker: rules (no I/O)")
struct ConnectBreakerRuleTests {
    @Test func aRefusedConnectIsLeftAloneThenProbedOnceWithGrowingBackoff() {
        var breaker = ConnectBreaker()
        let start = ContinuousClock.now
        #expect(breaker.decide(now: start) == .send)
        breaker.failedToConnect(now: start)
        #expect(breaker.decide(now: start + .milliseconds(249)) == .refuse)
        #expect(breaker.decide(now: start + .milliseconds(250)) == .probe)
        // One probe at a time.
        #expect(breaker.decide(now: start + .milliseconds(251)) == .refuse)
        breaker.failedToConnect(now: start + .milliseconds(300))
        #expect(breaker.state == .open(until: start + .milliseconds(800), backoff: .milliseconds(500)))
        // The wait doubles up to the cap.
        var now = start + .seconds(1)
        for _ in 0..<10 {
            guard case .open(let until, _) = breaker.state else { Issue.record("not open: \(breaker.state)"); return }
            now = until
            #expect(breaker.decide(now: now) == .probe)
            breaker.failedToConnect(now: now)
        }
        #expect(breaker.state == .open(until: now + ConnectBreaker.maxBackoff, backoff: ConnectBreaker.maxBackoff))
        breaker.connected()
        #expect(breaker.decide(now: now) == .send)
    }
}

/// Counts what reaches the wrapped transport (a real URLSession underneath).
private final class Counting: HTTPTransport, Sendable {
    let inner = URLSessionTransport()
    let sent = Atomic<Int>(0)
    func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        sent.add(1, ordering: .relaxed)
        return try await inner.send(request, timeout: timeout)
    }
}

@Suite("Connect guard: a closed port, then a server on it (real sockets)")
struct ConnectGuardTransportTests {
    @Test(.timeLimit(.minutes(1)))
    func refusedConnectionsStopReachingURLSessionAndComeBackWithTheServer() async throws {
        // Held (bound, not listening) while it must refuse, so no parallel test takes it.
        var refusing: RefusingPort? = try RefusingPort()
        let port = try #require(refusing?.port)
        let counting = Counting()
        let transport = ConnectGuardTransport(counting)
        let request = HTTPTransportRequest(method: "GET", url: try #require(URL(string: "http://127.0.0.1:\(port)/.well-known/jwks.json")))
        // 20 rounds of 20 concurrent requests while nothing listens: every one fails as "cannot
        // connect" (never reached), and after the first refusal almost none opens a connection.
        var failures = 0
        for _ in 0..<20 {
            await withTaskGroup(of: HTTPTransportError?.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        do { _ = try await transport.send(request, timeout: .seconds(2)); return nil } catch let error as HTTPTransportError { return error } catch { return nil }
                    }
                }
                for await error in group {
                    #expect(error?.code == .cannotConnect)
                    #expect(error?.mayHaveReachedServer == false)
                    failures += 1
                }
            }
        }
        let reachedURLSession = counting.sent.load(ordering: .relaxed)
        print("connect guard: \(failures) failed requests, \(reachedURLSession) reached URLSession, \(transport.refusedCount) refused locally")
        #expect(failures == 400)
        #expect(reachedURLSession < 60)
        #expect(transport.refusedCount > 340)

        // The server comes up on that port: after the backoff a probe connects and requests flow.
        refusing = nil
        #expect(refusing == nil)
        var configuration = FalSimConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = port
        try await withFalSim(configuration: configuration) { sim in
            _ = await sim.baseURL
            var answered: HTTPTransportResponse?
            let deadline = ContinuousClock.now + .seconds(20)
            while answered == nil, ContinuousClock.now < deadline {
                do {
                    answered = try await transport.send(request, timeout: .seconds(2))
                } catch let error as HTTPTransportError {
                    #expect(error.code == .cannotConnect)
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(answered?.status == 200)
        }
    }
}
