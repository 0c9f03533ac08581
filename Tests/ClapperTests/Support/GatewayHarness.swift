import AsyncHTTPClient
@testable import Clapper
import Crypto
import FalSim
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Redis
import ServiceLifecycle
import TestSupport

/// A running gateway on a real socket, for end-to-end tests: its port is chosen before it
/// starts, so the webhook URLs it gives fal-sim point back at it.
struct Gateway: Sendable {
    let port: Int
    let configuration: ClapperConfiguration
    var baseURL: String { "http://127.0.0.1:\(port)" }

    struct Reply: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]

        var json: [String: Any] {
            ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]) ?? [:]
        }
        var text: String { String(decoding: body, as: UTF8.self) }
        var errorCode: String? { (try? JSONDecoder().decode(ErrorBody.self, from: Data(body)))?.error.code }
    }

    func send(_ method: HTTPMethod, _ path: String, token: String? = nil, headers: [String: String] = [:], body: [UInt8]? = nil) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: Array(bytes.readableBytesView))
    }

    func job(_ id: String, token: String) async throws -> [String: Any] {
        try await send(.GET, "/v1/jobs/\(id)", token: token).json
    }
}

/// Test user tokens, signed with the test configuration's JWT secret.
enum TestUsers {
    static func token(_ user: String, secret: String = "test-jwt-secret-0123456789abcdef") -> String {
        JWTSigner(secret: secret).token(subject: user, expiresAt: Date().addingTimeInterval(3600))
    }
}

/// fal-sim settings for gateway tests: fast, with a signing key the test holds too.
struct SimSetup: Sendable {
    let signingKey = Curve25519.Signing.PrivateKey()
    /// How long `submit-stall` holds fal-sim's answer.
    var stall: Duration = .seconds(3)
    var runDelay: Duration = .milliseconds(20)
    var concurrency: Int?
    var configuration: FalSimConfiguration {
        var configuration = FalSimConfiguration()
        configuration.queueDelay = .milliseconds(5)
        configuration.runDelay = runDelay
        configuration.concurrency = concurrency
        configuration.webhookRetryScale = 0.0005
        configuration.signingKey = signingKey
        configuration.stallDuration = stall
        return configuration
    }
}

struct GatewayDidNotStart: Error, CustomStringConvertible {
    let port: Int
    var description: String { "the gateway did not start on port \(port)" }
}

/// Starts a gateway on `redis` talking to `sim`, runs `body`, then shuts the gateway down.
/// The port is picked before the start (webhook URLs need it); if another process takes it in
/// between, the start is tried again on a new one.
func withGateway<T: Sendable>(
    redis server: RedisServer,
    sim: FalSim,
    logger: Logger? = nil,
    _ customize: @Sendable (inout ClapperConfiguration) -> Void = { _ in },
    _ body: @Sendable (Gateway) async throws -> T
) async throws -> T {
    for _ in 0..<2 {
        do {
            return try await startGateway(port: try FreePort.find(), redis: server, sim: sim, logger: logger, customize, body)
        } catch is GatewayDidNotStart {
            continue
        }
    }
    return try await startGateway(port: try FreePort.find(), redis: server, sim: sim, logger: logger, customize, body)
}

private func startGateway<T: Sendable>(
    port: Int,
    redis server: RedisServer,
    sim: FalSim,
    logger: Logger?,
    _ customize: @Sendable (inout ClapperConfiguration) -> Void,
    _ body: @Sendable (Gateway) async throws -> T
) async throws -> T {
    let simURL = await sim.baseURL.absoluteString
    let jwks = await sim.jwksURL.absoluteString
    var configuration = testConfiguration(redis: server) {
        $0.httpPort = port
        $0.publicURL = "http://127.0.0.1:\(port)"
        $0.falQueueURL = simURL
        $0.falKey = "sim-key:sim-secret"
        $0.falJWKSURL = jwks
        $0.falWebhookUserID = sim.userID
        $0.reconcileInterval = .zero
    }
    customize(&configuration)
    let settings = configuration
    guard let result = try await runGateway(settings, logger: logger, { port, _ in try await body(Gateway(port: port, configuration: settings)) }) else {
        throw GatewayDidNotStart(port: port)
    }
    return result
}

/// Builds the gateway and runs it in a `ServiceGroup` while `body(port, group)` runs, then shuts
/// it down gracefully (also when `body` throws). Nil when the gateway did not start.
func runGateway<T: Sendable>(
    _ configuration: ClapperConfiguration,
    logger: Logger? = nil,
    _ body: @Sendable (Int, ServiceGroup) async throws -> T
) async throws -> T? {
    let (ready, readyContinuation) = AsyncStream.makeStream(of: Int.self)
    let app = try await buildApplication(configuration, logger: logger) { port in readyContinuation.yield(port) }
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: Logger(label: "test")))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask {
            // If the gateway cannot start (say the port was taken meanwhile), end the wait below.
            defer { readyContinuation.finish() }
            try await group.run()
        }
        var iterator = ready.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try? await tasks.waitForAll()
            return nil
        }
        do {
            let result = try await body(port, group)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

/// Redis, fal-sim and one gateway: the whole stack on loopback.
func withStack<T: Sendable>(
    sim setup: SimSetup = SimSetup(),
    _ customize: @Sendable (inout ClapperConfiguration) -> Void = { _ in },
    _ body: @Sendable (Gateway, FalSim, RedisServer) async throws -> T
) async throws -> T {
    try await withRedisServer { server in
        try await withFalSim(configuration: setup.configuration) { sim in
            try await withGateway(redis: server, sim: sim, customize) { gateway in
                try await body(gateway, sim, server)
            }
        }
    }
}

/// Waits, on Redis's change channel (no polling), until job `id` satisfies `predicate`;
/// checks the current state first so a change that already happened is not missed.
func waitForJob(
    _ id: String,
    gateway: Gateway,
    redis server: RedisServer,
    token: String,
    until predicate: @Sendable ([String: Any]) -> Bool
) async throws -> [String: Any] {
    let subscriber = RedisSubscriber(configuration: RedisConfiguration(url: server.url), channels: ["clapper:events"])
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await subscriber.run() }
        defer { subscriber.stop() }
        var events = subscriber.events.makeAsyncIterator()
        _ = await events.next()  // subscribed
        let current = try await gateway.job(id, token: token)
        if predicate(current) { return current }
        while let event = await events.next() {
            guard case .message(_, let payload) = event,
                  let envelope = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any],
                  envelope["jobId"] as? String == id,
                  let job = envelope["job"] as? [String: Any]
            else { continue }
            if predicate(job) { return job }
        }
        throw CancellationError()
    }
}

func isFinished(_ view: [String: Any]) -> Bool {
    ["completed", "failed", "canceled"].contains(view["status"] as? String ?? "")
        && (view["audioStatus"] == nil || view["audioStatus"] is NSNull || ["completed", "failed", "canceled", "timed_out"].contains(view["audioStatus"] as? String ?? ""))
}

func jobBody(_ prompt: String, seconds: Int = 2, audio: Bool = true, tier: String = "fast", mode: String? = nil) -> [UInt8] {
    var feature: [String: Any] = ["audio": audio]
    if audio { feature["audioTier"] = tier }
    var object: [String: Any] = ["prompt": prompt, "durationSeconds": seconds, "feature": feature]
    if let mode { object["audioMode"] = mode }
    return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
}
