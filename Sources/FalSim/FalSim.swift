public import Crypto
public import Foundation
import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization

/// A local stand-in for fal.ai's queue API (see FAL-API.md): submit, status, status stream,
/// result, cancel, signed webhooks with retries, fault injection, and ground truth.
///
/// Run it as a `Service` (it serves until graceful shutdown or cancellation), or scoped with
/// `withFalSim`. One instance runs once.
public final class FalSim: Service, Sendable {
    public let configuration: FalSimConfiguration
    private let engine: FalSimEngine
    private let scheduler: FalSimScheduler
    private let logger: Logger
    /// The port the server listens on; 0 until it is bound (and when it could not bind).
    private let listeningPort = Atomic<Int>(0)

    public init(configuration: FalSimConfiguration = .init(), logger: Logger = Logger(label: "fal-sim")) {
        self.configuration = configuration
        self.logger = logger
        let scheduler = FalSimScheduler()
        self.scheduler = scheduler
        let signer = FalSimWebhookSigner(
            key: configuration.signingKey ?? Curve25519.Signing.PrivateKey(),
            keyID: configuration.keyID,
            userID: configuration.userID
        )
        self.engine = FalSimEngine(
            configuration: configuration,
            signer: signer,
            scheduler: scheduler,
            transport: FalSimURLSessionTransport(timeout: configuration.webhookTimeout),
            logger: logger
        )
    }

    /// Serves until graceful shutdown or cancellation. Throws on a bad configuration
    /// (an unknown fault name) or when the address cannot be bound.
    public func run() async throws {
        _ = try FalSimFaults(names: configuration.faults)
        let engine = self.engine
        let app = Application(
            responder: FalSimResponder(engine: engine, configuration: configuration),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "fal-sim"),
            services: [scheduler],
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? 0
                listeningPort.store(port, ordering: .relaxed)
                await engine.bound(port: port)
            },
            logger: logger
        )
        do {
            try await app.run()
        } catch {
            // Wake `baseURL` waiters with an address nothing listens on, so callers fail fast.
            await engine.bound(port: 0)
            throw error
        }
    }

    /// The public base URL (`publicURL`, or its own address); waits until the server is bound.
    public var baseURL: URL {
        get async { URL(string: await engine.baseURL())! }
    }

    /// The port the server listens on once it is bound; nil when it could not bind.
    public var boundPort: Int? {
        get async {
            _ = await engine.baseURL()
            let port = listeningPort.load(ordering: .relaxed)
            return port == 0 ? nil : port
        }
    }

    /// One line saying why `run()` ended before serving: the address when it could not be
    /// bound (port in use, address not on this machine, no permission), else the error.
    public static func describeStartFailure(_ error: any Error, host: String, port: Int) -> String {
        if let error = error as? IOError {
            return "cannot listen on \(host):\(port): \(String(cString: strerror(error.errnoCode)).lowercased())"
        }
        if error is SocketAddressError {
            return "cannot listen on \(host):\(port): no such address"
        }
        return "stopped: \(error)"
    }

    /// Where the webhook public key is served as a JWKS.
    public var jwksURL: URL {
        get async { URL(string: await engine.baseURL() + "/.well-known/jwks.json")! }
    }

    /// The Ed25519 key webhooks are signed with (unless `wrong-signature`).
    public var publicKey: Curve25519.Signing.PublicKey { engine.signer.key.publicKey }

    /// The fal user id webhooks carry.
    public var userID: String { configuration.userID }

    /// Adds a fault rule matched at submit. Throws on an unknown fault name.
    public func addFaultRule(_ rule: FalSimFaultRule) async throws {
        try await engine.addFaultRule(rule)
    }

    /// Every submit received, oldest first.
    public func requests() async -> [FalSimRequestRecord] { await engine.records() }

    /// The record of one request.
    public func request(id: String) async -> FalSimRequestRecord? { await engine.record(id: id) }

    /// Waits until `requestID` has at least `count` webhook delivery attempts recorded.
    @discardableResult
    public func waitForDeliveries(requestID: String, count: Int) async -> FalSimRequestRecord? {
        await engine.wait(requestID: requestID) { $0.deliveries.count >= count }
    }

    /// Waits until `requestID` is COMPLETED (or was rejected at submit).
    @discardableResult
    public func waitForCompletion(requestID: String) async -> FalSimRequestRecord? {
        await engine.wait(requestID: requestID) { $0.state == .completed || $0.state == .rejected }
    }

    /// Waits until `predicate` holds for the record of `requestID`.
    @discardableResult
    public func wait(
        requestID: String, until predicate: @escaping @Sendable (FalSimRequestRecord) -> Bool
    ) async -> FalSimRequestRecord? {
        await engine.wait(requestID: requestID, until: predicate)
    }

    /// Lets the requests held running by `hold-run` finish. Returns their ids.
    @discardableResult
    public func releaseHeldRuns() async -> [String] {
        await engine.releaseHeldRuns()
    }

    /// Delivers the webhooks held by `hold-webhook`, one after another (first tries), in
    /// completion order or reversed. Returns the request ids in delivery order.
    @discardableResult
    public func releaseHeldWebhooks(reverse: Bool = false) async -> [String] {
        await engine.releaseHeldWebhooks(reverse: reverse)
    }
}

/// Runs a `FalSim` in-process (port 0 by default) for the duration of `body`, then shuts it
/// down gracefully (open streams and stalled answers end; cancelled after 5 s at most).
public func withFalSim<T>(
    configuration: FalSimConfiguration = .init(),
    logger: Logger = Logger(label: "fal-sim"),
    _ body: (FalSim) async throws -> T
) async throws -> T {
    _ = try FalSimFaults(names: configuration.faults)
    let sim = FalSim(configuration: configuration, logger: logger)
    let group = ServiceGroup(configuration: .init(services: [sim], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(sim))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        tasks.addTask {
            try? await Task.sleep(for: .seconds(5))
            throw CancellationError()
        }
        // The first task to end is the group (normally) or the fallback timer.
        _ = try? await tasks.next()
        tasks.cancelAll()
        return try result.get()
    }
}
