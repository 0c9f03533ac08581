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
import Synchronization
import TestSupport

/// A running gateway on a real socket, for end-to-end tests: its port is chosen before it
/// starts, so the webhook URLs it gives fal-sim point back at it. Also the address of a gateway
/// in a child process (`ClapperProcess`), which has no `hooks` or `group`.
struct Gateway: Sendable {
    let port: Int
    let configuration: ClapperConfiguration
    /// What the built application shows tests (event hub, stream limiter, readiness probe).
    var hooks: BuildHooks? = nil
    /// The service group running it, to shut it down mid-test.
    var group: ServiceGroup? = nil
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

/// What `withGateway` starts. The default: a fresh Redis, fal-sim with `SimSetup`'s settings and
/// one gateway configured by `testConfiguration` (reconciler off).
struct GatewayOptions: Sendable {
    enum RedisSource: Sendable {
        /// A fresh `redis-server`, stopped afterwards.
        case fresh
        /// The test's own (it writes before the gateway starts, or restarts Redis with AOF).
        case given(RedisServer)
    }

    enum FalSource: Sendable {
        /// No fal: fal settings keep their defaults (and the reconciler its interval). For tests
        /// whose jobs never reach fal, such as event streams of jobs written straight to Redis.
        case none
        /// A fal-sim with these settings, stopped afterwards; the gateway talks to it.
        case sim(FalSimConfiguration)
    }

    var redis: RedisSource
    var fal: FalSource
    /// How many gateways share the Redis and fal-sim (each on its own port and event hub).
    var gateways: Int
    /// The gateways' logger (nil: Clapper's own, at the configuration's level).
    var logger: Logger?
    /// Applied last to every gateway's configuration (after the port and fal-sim's URLs).
    var configure: @Sendable (inout ClapperConfiguration) -> Void
    /// The gateways' wall clock (a `ManualClock` lets a test step time).
    var clock: any WallClock = SystemWallClock()

    init(
        redis: RedisSource = .fresh,
        fal: FalSource = .sim(SimSetup().configuration),
        gateways: Int = 1,
        logger: Logger? = nil,
        configure: @escaping @Sendable (inout ClapperConfiguration) -> Void = { _ in }
    ) {
        self.redis = redis
        self.fal = fal
        self.gateways = gateways
        self.logger = logger
        self.configure = configure
    }

    /// fal-sim with `setup`'s settings (the test keeps `setup` for its signing key).
    static func sim(_ setup: SimSetup, _ configure: @escaping @Sendable (inout ClapperConfiguration) -> Void = { _ in }) -> GatewayOptions {
        GatewayOptions(fal: .sim(setup.configuration), configure: configure)
    }

    /// No fal: a gateway on a fresh Redis.
    static func noFal(_ configure: @escaping @Sendable (inout ClapperConfiguration) -> Void = { _ in }) -> GatewayOptions {
        GatewayOptions(fal: .none, configure: configure)
    }
}

/// What a `withGateway` body gets: the running gateways, Redis, fal-sim, and a job writer and a
/// streaming HTTP client made on first use (and shut down at the end).
struct TestStack: Sendable {
    let gateways: [Gateway]
    /// The first gateway.
    var gateway: Gateway { gateways[0] }
    let server: RedisServer
    /// The first gateway's event hub.
    let hub: EventHub
    private let falSim: FalSim?
    private let clients: StackClients

    /// The fal-sim (a test that asked for `.none` and uses it is wrong: it traps).
    var sim: FalSim {
        guard let falSim else { preconditionFailure("withGateway(fal: .none) has no fal-sim") }
        return falSim
    }

    var port: Int { gateway.port }
    var configuration: ClapperConfiguration { gateway.configuration }
    /// Writes jobs straight through the repository, as the gateway does.
    var jobs: TestJobs { TestJobs(redis: clients.redis(), configuration: configuration) }
    /// An HTTP client for many long-lived streams (`makeHTTPClient`).
    var http: HTTPClient { clients.http() }

    /// Opens `path` on the first gateway as an event stream.
    func open(_ path: String, headers: [String: String] = [:]) async throws -> SSEReader {
        try await SSEReader(client: http, port: port, path: path, headers: headers)
    }

    fileprivate init(gateways: [Gateway], server: RedisServer, hub: EventHub, sim: FalSim?, clients: StackClients) {
        self.gateways = gateways
        self.server = server
        self.hub = hub
        self.falSim = sim
        self.clients = clients
    }
}

/// The clients a `TestStack` makes on first use: a Redis client (its pool starts threads) and a
/// streaming HTTP client.
private final class StackClients: Sendable {
    let redisConfiguration: RedisConfiguration
    private let made = Mutex<(redis: RedisClient?, http: HTTPClient?)>((nil, nil))

    init(redisConfiguration: RedisConfiguration) { self.redisConfiguration = redisConfiguration }

    func redis() -> RedisClient {
        made.withLock { made in
            if let redis = made.redis { return redis }
            let redis = RedisClient(configuration: redisConfiguration)
            made.redis = redis
            return redis
        }
    }

    func http() -> HTTPClient {
        made.withLock { made in
            if let http = made.http { return http }
            let http = makeHTTPClient()
            made.http = http
            return http
        }
    }

    func shutdown() async {
        let (redis, http) = made.withLock { ($0.redis, $0.http) }
        try? await http?.shutdown()
        await redis?.shutdown()
    }
}

/// Redis, fal-sim and `options.gateways` gateways on loopback, for as long as `body` runs; then
/// everything is shut down (also when `body` throws). Each gateway's port is picked before it
/// starts (webhook URLs need it); if another process takes it in between, it is tried again on a
/// new one.
func withGateway<T: Sendable>(
    _ options: GatewayOptions = GatewayOptions(),
    _ body: @Sendable (TestStack) async throws -> T
) async throws -> T {
    switch options.redis {
    case .fresh: try await withRedisServer { try await withGateway(options, redis: $0, body) }
    case .given(let server): try await withGateway(options, redis: server, body)
    }
}

private func withGateway<T: Sendable>(_ options: GatewayOptions, redis server: RedisServer, _ body: @Sendable (TestStack) async throws -> T) async throws -> T {
    switch options.fal {
    case .none: try await startGateways(options, redis: server, sim: nil, started: [], body)
    case .sim(let configuration): try await withFalSim(configuration: configuration) { try await startGateways(options, redis: server, sim: $0, started: [], body) }
    }
}

/// Starts the gateways one inside the other, then runs `body` with all of them.
private func startGateways<T: Sendable>(
    _ options: GatewayOptions,
    redis server: RedisServer,
    sim: FalSim?,
    started: [Gateway],
    _ body: @Sendable (TestStack) async throws -> T
) async throws -> T {
    guard started.count < max(options.gateways, 1) else {
        guard let hub = started[0].hooks?.eventHub else { throw TestFailure("the gateway has no event hub") }
        let clients = StackClients(redisConfiguration: started[0].configuration.redis)
        do {
            let result = try await body(TestStack(gateways: started, server: server, hub: hub, sim: sim, clients: clients))
            await clients.shutdown()
            return result
        } catch {
            await clients.shutdown()
            throw error
        }
    }
    var failure = GatewayDidNotStart(port: 0)
    for _ in 0..<3 {
        do {
            return try await runGateway(port: try FreePort.find(), redis: server, sim: sim, options: options) { gateway in
                try await startGateways(options, redis: server, sim: sim, started: started + [gateway], body)
            }
        } catch let error as GatewayDidNotStart {
            failure = error
        }
    }
    // Not a `GatewayDidNotStart`: a gateway started before this one must not retry for it.
    throw TestFailure("\(failure) (three tries)")
}

struct GatewayDidNotStart: Error, CustomStringConvertible {
    let port: Int
    var description: String { "the gateway did not start on port \(port)" }
}

/// Builds one gateway on `port` and runs it in a `ServiceGroup` while `body` runs, then shuts it
/// down gracefully (also when `body` throws). Throws `GatewayDidNotStart` when it did not start.
private func runGateway<T: Sendable>(
    port: Int,
    redis server: RedisServer,
    sim: FalSim?,
    options: GatewayOptions,
    _ body: @Sendable (Gateway) async throws -> T
) async throws -> T {
    var configuration = testConfiguration(redis: server) {
        $0.httpPort = port
        $0.publicURL = "http://127.0.0.1:\(port)"
    }
    if let sim {
        configuration.falQueueURL = await sim.baseURL.absoluteString
        configuration.falKey = "sim-key:sim-secret"
        configuration.falJWKSURL = await sim.jwksURL.absoluteString
        configuration.falWebhookUserID = sim.userID
        configuration.reconcileInterval = .zero
    }
    options.configure(&configuration)
    let (ready, readyContinuation) = AsyncStream.makeStream(of: Int.self)
    let hooks = BuildHooks()
    let app = try await buildApplication(configuration, logger: options.logger, onServerRunning: { readyContinuation.yield($0) }, hooks: hooks, clock: options.clock)
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: Logger(label: "test")))
    let gateway = Gateway(port: port, configuration: configuration, hooks: hooks, group: group)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask {
            // If the gateway cannot start (say the port was taken meanwhile), end the wait below.
            defer { readyContinuation.finish() }
            try await group.run()
        }
        var iterator = ready.makeAsyncIterator()
        guard await iterator.next() != nil else {
            try? await tasks.waitForAll()
            throw GatewayDidNotStart(port: port)
        }
        do {
            let result = try await body(gateway)
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

/// A `POST /v1/jobs` body; `merge` nil leaves `feature.merge` to its default (on for `fast`).
func jobBody(_ prompt: String, seconds: Int = 2, audio: Bool = true, tier: String = "fast", mode: String? = nil, merge: Bool? = nil) -> [UInt8] {
    var feature: [String: Any] = ["audio": audio]
    if audio { feature["audioTier"] = tier }
    if let merge { feature["merge"] = merge }
    var object: [String: Any] = ["prompt": prompt, "durationSeconds": seconds, "feature": feature]
    if let mode { object["audioMode"] = mode }
    return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
}
