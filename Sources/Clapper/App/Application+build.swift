import Fal
import Foundation
import Hummingbird
import Logging
import NIOCore
import Redis
import ServiceLifecycle
import Synchronization

public typealias ClapperApplication = Application<RouterResponder<ClapperRequestContext>>

/// Builds the whole gateway from configuration: the code tests run is the code shipped.
/// Services start in order (Redis first) and shut down in reverse (HTTP server first).
public func buildApplication(
    _ configuration: ClapperConfiguration,
    logger: Logger? = nil,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> ClapperApplication {
    try await buildApplication(configuration, logger: logger, onServerRunning: onServerRunning, hooks: BuildHooks())
}

/// What tests may look at inside a built application: its route table (compared with
/// openapi.yaml), its event hub (subscriber counts), its per-user stream counts and its
/// readiness probe (PINGs sent).
final class BuildHooks: Sendable {
    let routes = RouteTableBox()
    private let hub = Mutex<EventHub?>(nil)
    private let limiter = Mutex<StreamLimiter?>(nil)
    private let probe = Mutex<ReadinessProbe?>(nil)

    var eventHub: EventHub? { hub.withLock { $0 } }
    var streamLimiter: StreamLimiter? { limiter.withLock { $0 } }
    var readinessProbe: ReadinessProbe? { probe.withLock { $0 } }
    fileprivate func set(_ eventHub: EventHub) { hub.withLock { $0 = eventHub } }
    fileprivate func set(_ streamLimiter: StreamLimiter) { limiter.withLock { $0 = streamLimiter } }
    fileprivate func set(_ readinessProbe: ReadinessProbe) { probe.withLock { $0 = readinessProbe } }
}

/// As above, filling in `hooks`.
func buildApplication(
    _ configuration: ClapperConfiguration,
    logger: Logger?,
    onServerRunning: @escaping @Sendable (Int) async -> Void,
    hooks: BuildHooks
) async throws -> ClapperApplication {
    let table = hooks.routes
    _ = ClapperMetrics.registry
    var logger = logger ?? Logger(label: "clapper")
    logger.logLevel = configuration.logLevel

    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let catalog = try ModelCatalog.load(json: configuration.modelCatalogJSON, audioPromptSuffix: configuration.audioPromptSuffix)
    let keys = JobKeys()
    let repository = JobRepository(redis: redis, keys: keys, eventsMaxLength: configuration.eventsMaxLength)
    let fal = FalClient(
        configuration: FalClientConfiguration(
            queueURL: configuration.falQueueURL,
            key: configuration.falKey,
            timeouts: .init(submit: configuration.falSubmitTimeout)
        ),
        logger: logger
    )
    let followUps = FollowUps()
    let processor = JobProcessor(
        store: JobStore(repository: repository, catalog: catalog, policy: configuration.reconcilePolicy, retention: configuration.jobRetention),
        fal: fal,
        catalog: catalog,
        webhookTokens: WebhookToken(secret: configuration.webhookSecret),
        publicURL: configuration.publicURL,
        logger: logger,
        now: { Date() },
        followUps: followUps
    )
    let verifier = configuration.verifyWebhookSignatures
        ? FalWebhookVerifier(
            configuration: FalWebhookVerifierConfiguration(jwksURL: configuration.falJWKSURL, pinnedUserID: configuration.falWebhookUserID),
            logger: logger
        )
        : nil
    if configuration.devMode {
        logger.warning("CLAPPER_DEV_MODE is on: requests without a token act as the user 'dev'; do not run this in production")
    }
    if verifier == nil {
        logger.warning("CLAPPER_WEBHOOK_VERIFY=false: fal webhook signatures are NOT verified; anyone who learns a webhook URL can complete its task")
    }
    if verifier != nil, configuration.falWebhookUserID == nil {
        logger.warning("FAL_WEBHOOK_USER_ID is not set: a webhook signed by any fal account is accepted when its URL token is right")
    }
    if configuration.falKey == nil {
        logger.warning("FAL_KEY is not set: submits to fal will be refused")
    }

    let router = Router(context: ClapperRequestContext.self)
    var routes = RouteRegistrar(router: router, table: RouteTable())
    // The table is complete before the first request: the error middleware reads it for 405s.
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: CORSPolicyMiddleware(origins: configuration.corsOrigins))
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: ErrorMiddleware(table: table))
    router.add(middleware: BodyLimitMiddleware(limit: configuration.maxBodyBytes))
    router.add(middleware: AuthMiddleware(
        verifier: configuration.jwtSecret.map { JWTVerifier(secret: $0, issuer: configuration.authIssuer, audience: configuration.authAudience) },
        jwks: configuration.authJWKSURL.flatMap(URL.init(string:)).map {
            JWKSTokenVerifier(url: $0, issuer: configuration.authIssuer, audience: configuration.authAudience, logger: logger)
        },
        adminToken: configuration.adminToken,
        devMode: configuration.devMode
    ))

    let health = HealthController(redis: redis, readyTimeout: configuration.readyTimeout)
    hooks.set(health.probe)
    health.register(on: &routes)
    ClapperMetrics.register(on: &routes)
    let events = EventHub(redis: redis, subscriberConfiguration: configuration.redis, logger: logger)
    hooks.set(events)
    let streams = StreamLimiter(maxPerUser: configuration.sseMaxStreamsPerUser)
    hooks.set(streams)
    EventsController(configuration: configuration, redis: redis, hub: events, streams: streams).register(on: &routes)
    try await StatusPageController.load().register(on: &routes)
    JobsController(
        processor: processor,
        repository: repository,
        catalog: catalog,
        eventTokens: EventTokenSigner(secret: configuration.webhookSecret),
        publicURL: configuration.publicURL
    ).register(on: &routes)
    WebhookController(processor: processor, tokens: WebhookToken(secret: configuration.webhookSecret), verifier: verifier, catalog: catalog).register(on: &routes)
    let reconcileWorker = TaskReconciler(processor: processor, queue: DueQueue(redis: redis, keys: keys), policy: configuration.reconcilePolicy)
    AdminController(worker: reconcileWorker, now: { Date() }).register(on: &routes)
    table.set(routes.table)

    // The reconciler after the event hub: it stops before it on shutdown (reverse order).
    // Follow-ups after Redis (they use it) and before the server (which feeds them): on shutdown
    // the server stops first, then the queued follow-ups finish, then Redis closes.
    var services: [any Service] = [redis, events, followUps]
    if configuration.reconcileInterval > .zero {
        services.append(Reconciler(worker: reconcileWorker, interval: configuration.reconcileInterval, logger: logger, now: { Date() }))
    }
    // Slow clients: a request head must arrive within the header timeout; a connection with
    // nothing in progress is closed after the idle timeout (responses in progress, event streams
    // included, are never cut by either).
    return Application(
        router: router,
        server: .http1(configuration: .init(
            additionalChannelHandlers: [RequestHeadTimeoutHandler(timeout: TimeAmount(configuration.httpHeaderTimeout))],
            idleTimeout: TimeAmount(configuration.httpIdleTimeout)
        )),
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "clapper"),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
}
