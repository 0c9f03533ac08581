import AsyncHTTPClient
@testable import Clapper
import Fal
import FalSim
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Redis
import Synchronization
import TestSupport

/// Settings that make the reconciler act within milliseconds: models expected to finish at
/// once, checks 0.2 s apart growing to 1 s, a 1 s submit grace.
enum ReconcileSetup {
    static let adminToken = "test-admin-token"

    static var catalogJSON: String { catalogJSON() }

    /// The catalog with every model expected at once; timeouts (the deadlines of unknown submits
    /// and of tasks at fal) shortened where given.
    static func catalogJSON(videoTimeoutSeconds: Int? = nil, audioTimeoutSeconds: Int? = nil, videoExpectedSeconds: Int = 0) -> String {
        var catalog = ModelCatalog.default
        catalog.video.expectedSeconds = videoExpectedSeconds
        if let videoTimeoutSeconds { catalog.video.timeoutSeconds = videoTimeoutSeconds }
        for (tier, var model) in catalog.audioTiers {
            model.expectedSeconds = 0
            if let audioTimeoutSeconds { model.timeoutSeconds = audioTimeoutSeconds }
            catalog.audioTiers[tier] = model
        }
        catalog.merge.expectedSeconds = 0
        return String(decoding: try! JSONEncoder().encode(catalog), as: UTF8.self)
    }

    static let policy = ReconcilePolicy(
        defaults: .init(graceSeconds: 0, baseSeconds: 0.2, factor: 2, maxSeconds: 1),
        submitGraceSeconds: 1,
        batchSize: 50,
        leaseSeconds: 10,
        concurrency: 16
    )

    /// Turns the reconciler on (every 50 ms) with the fast catalog and policy.
    static func on(_ configuration: inout ClapperConfiguration) {
        configuration.reconcileInterval = .milliseconds(50)
        configuration.modelCatalogJSON = catalogJSON
        configuration.reconcilePolicy = policy
    }

    /// The fast catalog and policy, reconciler off (admin-driven tests, backlogs).
    static func off(_ configuration: inout ClapperConfiguration) {
        configuration.reconcileInterval = .zero
        configuration.modelCatalogJSON = catalogJSON
        configuration.reconcilePolicy = policy
    }

    static func sim(faults: [String] = [], _ tweak: (inout FalSimConfiguration) -> Void = { _ in }) -> FalSimConfiguration {
        var configuration = SimSetup().configuration
        configuration.faults = faults
        tweak(&configuration)
        return configuration
    }
}

/// Counts fal status requests per request id (`GET …/requests/{id}/status`), then sends them on.
final class CountingTransport: HTTPTransport {
    private let inner = URLSessionTransport()
    private let counts = Mutex<[String: Int]>([:])

    func send(_ request: HTTPTransportRequest, timeout: Duration) async throws(HTTPTransportError) -> HTTPTransportResponse {
        let parts = request.url.path.split(separator: "/")
        if request.method == "GET", parts.last == "status", parts.count >= 2 {
            let id = String(parts[parts.count - 2])
            counts.withLock { $0[id, default: 0] += 1 }
        }
        return try await inner.send(request, timeout: timeout)
    }

    var statusRequests: [String: Int] { counts.withLock { $0 } }
}

/// A reconciler worker of its own (its own Redis pool and fal client), as a second instance has.
func makeWorker(server: RedisServer, simURL: String, publicURL: String, transport: any HTTPTransport) throws -> (TaskReconciler, RedisClient) {
    // The metrics backend first: a handle made before it (no gateway built yet) counts into nothing
    // for the rest of the process, and LatencyHistogramTests reads them.
    _ = ClapperMetrics.registry
    let redis = RedisClient(configuration: RedisConfiguration(url: server.url, poolSize: 8))
    let keys = JobKeys()
    let catalog = try ModelCatalog.load(json: ReconcileSetup.catalogJSON)
    let processor = JobProcessor(
        store: JobStore(repository: JobRepository(redis: redis, keys: keys, eventsMaxLength: 100), catalog: catalog),
        fal: FalClient(configuration: FalClientConfiguration(queueURL: simURL, key: "sim-key:sim-secret"), transport: transport),
        catalog: catalog,
        webhookTokens: WebhookToken(secret: "test-webhook-secret-0123456789"),
        publicURL: publicURL,
        logger: Logger(label: "test-reconciler"),
        clock: SystemWallClock()
    )
    return (TaskReconciler(processor: processor, queue: DueSet(redis: redis, keys: keys), policy: ReconcileSetup.policy), redis)
}

/// Reads `GET /v1/events` (every change of the caller's jobs) until `count` distinct jobs were
/// seen finished; returns the last view of each. Must be opened before the jobs change.
struct UserEventStream {
    let response: HTTPClientResponse

    static func open(gateway: Gateway, token: String) async throws -> UserEventStream {
        var request = HTTPClientRequest(url: gateway.baseURL + "/v1/events")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "text/event-stream")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(180))
        return UserEventStream(response: response)
    }

    func collectFinished(count: Int) async throws -> [String: [String: Any]] {
        var finished: [String: [String: Any]] = [:]
        var pending: [UInt8] = []
        for try await buffer in response.body {
            pending += buffer.readableBytesView
            while let end = pending.indices.dropLast().first(where: { pending[$0] == 0x0A && pending[$0 + 1] == 0x0A }) {
                let block = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeFirst(end + 2)
                guard block.contains("event: job") else { continue }
                for line in block.split(separator: "\n") where line.hasPrefix("data:") {
                    let data = Data(line.dropFirst(5).drop { $0 == " " }.utf8)
                    guard let view = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                          let id = view["jobId"] as? String else { continue }
                    if isFinished(view) { finished[id] = view }
                }
                if finished.count >= count { return finished }
            }
        }
        return finished
    }
}

/// The `version` of each of `ids` as the API shows it.
func versions(_ ids: [String], gateway: Gateway, token: String) async throws -> [String: Int] {
    var result: [String: Int] = [:]
    for id in ids { result[id] = try await gateway.job(id, token: token)["version"] as? Int }
    return result
}

/// Creates `count` jobs, `parallel` at a time; returns their ids in creation order.
func createJobs(_ count: Int, gateway: Gateway, token: String, parallel: Int = 8, body: @escaping @Sendable (Int) -> [UInt8]) async throws -> [String] {
    var ids = [String?](repeating: nil, count: count)
    try await withThrowingTaskGroup(of: (Int, String?).self) { group in
        var next = 0
        func add() {
            let index = next
            next += 1
            group.addTask {
                let reply = try await gateway.send(.POST, "/v1/jobs", token: token, body: body(index))
                return (index, reply.json["jobId"] as? String)
            }
        }
        while next < min(parallel, count) { add() }
        while let (index, id) = try await group.next() {
            ids[index] = id
            if next < count { add() }
        }
    }
    return ids.compactMap { $0 }
}
